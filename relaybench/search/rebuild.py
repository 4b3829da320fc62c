"""``relaybench report`` on a search folder: re-judge every probe from its records, conclude again.

Each probe folder's summary is rebuilt from its records (``reports``), its verdict recomputed
with the SLO stored in ``search.json`` (same seeded bootstrap, so the same records give the same
verdict), the capacity concluded again from the probes (``bracket.conclude``), and the report
written anew. A folder copied from another machine rebuilds the same capacity. Any other folder
goes to ``reports``' own ``relaybench report``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from relaybench.cliargs import Parser
from relaybench.errors import UsageError
from relaybench.search.bracket import (
    HARNESS_BOUND,
    INTERRUPTED,
    MOCK_BOUND,
    SearchSettings,
    conclude,
)
from relaybench.search.probe import evaluate
from relaybench.search.scaling import scaling
from relaybench.search.slo import FAIL, INCONCLUSIVE, PASS, SLO


def report_main(argv: Sequence[str]) -> int:
    parser = Parser(
        prog="relaybench report",
        description="Rebuild a run folder's report, or a search folder's (re-judging its probes).",
    )
    parser.add_argument("dir", type=Path, help="the run folder or search folder")
    args, _ = parser.parse_known_args(list(argv))
    if not (args.dir / "search.json").is_file():
        from reports.cli import report_main as run_report

        return run_report(argv)
    doc = rebuild(args.dir)
    for name, entry in doc["targets"].items():
        print(f"{name}: {entry['message']}")
    print(f"\nreport: {args.dir / 'report.html'}  {args.dir / 'report.md'}")
    return 0


def rebuild(folder: Path) -> dict[str, Any]:
    from reports.search import load_search, write_search_report

    doc = load_search(folder)
    try:
        settings = SearchSettings(**doc["settings"])
    except (KeyError, TypeError) as exc:
        raise UsageError(f"{folder / 'search.json'}: bad settings block ({exc})") from exc
    for name, entry in doc["targets"].items():
        _rejudge(folder, name, entry, settings)
    counts = doc.get("relay_workers")
    if counts:
        keyed = {w: doc["targets"].get(f"relay-w{w}") for w in counts}
        done = {w: e for w, e in keyed.items() if e}
        doc["scaling"] = scaling(
            {w: e.get("capacity") for w, e in done.items()},
            {w: e.get("status") for w, e in done.items()},
            int(doc.get("cpus") or 1),
            {w: (e.get("bracket") or {}).get("low") for w, e in done.items()},
        )
    (folder / "search.json").write_text(json.dumps(doc, indent=2) + "\n")
    write_search_report(folder, doc)
    return doc


def _rejudge(folder: Path, name: str, entry: dict, settings: SearchSettings) -> None:
    from relaybench.search.bracket import ProbeResult

    slo = SLO(**(entry.get("slo") or {}))
    probes: list[ProbeResult] = []
    for stored in entry.get("probes") or []:
        path = folder / stored["folder"] if stored.get("folder") else None
        if path is None or not (path / "records").is_dir():
            print(f"note: {name} probe {stored.get('folder')}: no records; kept as stored",
                  file=sys.stderr)  # fmt: skip
            probes.append(_stored(stored))
            continue
        if stored["verdict"] == INTERRUPTED:
            result = _stored(stored)  # cut short: its records are not a probe of that length
        else:
            result = evaluate(path, name, stored["load"], stored["seconds"], slo)
        result.role = stored.get("role", "bracket")
        result.folder = stored["folder"]
        result.counted = _counted(stored.get("counted"), result)
        probes.append(result)
    outcome = conclude(probes, settings, entry.get("stopped") or "converged")
    entry.update(outcome.as_dict())


def _counted(before: str | None, result: Any) -> str | None:
    """Counted as before (a first inconclusive attempt that was repeated stays uncounted)."""
    if before is None or result.verdict in (HARNESS_BOUND, MOCK_BOUND, INTERRUPTED):
        return None
    if result.verdict == INCONCLUSIVE:
        return PASS if all(c.decided for c in result.checks) else FAIL
    return PASS if result.verdict == PASS else FAIL


def _stored(stored: dict) -> Any:
    from relaybench.search.bracket import ProbeResult
    from relaybench.search.slo import Check

    fields = {k: v for k, v in stored.items() if k in ProbeResult.__dataclass_fields__}
    fields["checks"] = [Check(**c) for c in stored.get("checks") or []]
    return ProbeResult(**fields)
