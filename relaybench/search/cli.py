"""``relaybench search``: per target, the highest load meeting the SLOs, and what it costs.

The command line is ours (search, SLO, mock model and plan options) plus every ``relaybench
run`` option, handed to ``relaybench.run.cli.parse`` so targets, keys, the workload and the
mock are parsed and checked exactly as for a run. Each probe is a run of one target in
``DIR/probes/<target>/<NN>-<role>-<load>/``; ``DIR/search.json`` is rewritten after every probe
(an interrupted search keeps what it measured); the report goes to ``DIR/report.md`` and
``DIR/report.html``.

Exit codes: 0 every target's capacity was found; 1 a search ended without one (below --start,
harness-bound, mock-bound, every request failed, or no failure within --max-probes);
2 bad usage; 130 interrupted (search.json and the report still written).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import shlex
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from relaybench import credentials
from relaybench.cliargs import (
    Parser,
    bounded,
    duration_s,
    fraction,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from relaybench.errors import UsageError
from relaybench.search.bracket import FOUND, INTERRUPTED, SearchSettings, find_capacity
from relaybench.search.probe import AXES, STEADY_E2E_TIMES, UNITS, RunProbe, trace_rates
from relaybench.search.scaling import redis_server, scaling, worker_counts
from relaybench.search.slo import SLO, slo_from_toml

SCHEMA_VERSION = 1
DEFAULT_START = {"rate": 1.0, "users": 2.0, "rate_scale": 0.5}
# ``relaybench run`` options a search sets itself
NOT_FOR_SEARCH = {
    "--duration": "each probe's length is --probe-s",
    "--rate": "the rate is the load axis the search moves (--start)",
    "--steps": "a search probes one load at a time",
    "--web": "probes are short runs; watch the printed probe lines",
}
DEFAULT_TARGETS = ("direct", "relay", "relay-buffered")


def build_parser() -> Parser:
    p = Parser(
        prog="relaybench search",
        description="Find, per target, the highest load meeting the SLOs: a doubling bracket "
        "from --start, bisection to --precision, one confirmation probe twice as long.",
        epilog="Every `relaybench run` option except --duration, --rate, --steps and --web also "
        "applies (--target, --buffered, --api-key, --users, --processes, --seed, --max-tokens, "
        "--ttft-ms, --itl-ms, --output-tokens, --timeout, --header, ...): see relaybench run "
        "--help. Open loop, --users is the smallest in-flight cap (raised per probe by Little's "
        "law).",
    )
    p.add_argument("--out", type=Path, required=True, help="the search folder (new or empty)")
    p.add_argument(
        "--scenario",
        default="constant",
        choices=tuple(AXES),
        help="constant/poisson: the axis is req/s; steady: users (closed loop); "
        "trace: the trace's --rate-scale",
    )
    slo = p.add_argument_group("SLOs (at least one)")
    slo.add_argument("--slo-ttft-p95-ms", type=positive_float, help="TTFT p95 limit")
    slo.add_argument("--slo-error-rate", type=fraction, help="error-rate limit, e.g. 0.01")
    slo.add_argument("--slo-e2e-p95-ms", type=positive_float, help="E2E p95 limit")
    slo.add_argument(
        "--slo-goodput", type=fraction, help="least share of requests ok within the latency limits"
    )
    slo.add_argument(
        "--slo-file",
        type=Path,
        help='thresholds-style TOML: [TARGET] "ttft_ms.p95" = "<= 800", '
        '"error_rate", "e2e_ms.p95"; [derived] goodput_pct',
    )
    s = p.add_argument_group("search")
    s.add_argument("--probe-s", type=duration_s, default=10.0, help="seconds per probe")
    s.add_argument(
        "--start", type=positive_float, help="first load (default 1 req/s, 2 users, 0.5× the trace)"
    )
    s.add_argument(
        "--precision",
        type=bounded(0, 1, low_open=True, high_open=True),
        default=0.1,
        help="stop when (high - low) / low is at most this",
    )
    s.add_argument(
        "--max-probes",
        type=positive_int,
        default=8,
        help="probes before the confirmation (repeats included)",
    )
    s.add_argument(
        "--default-target",
        action="append",
        choices=DEFAULT_TARGETS,
        help="without --target: which of our targets to search (default relay)",
    )
    s.add_argument(
        "--relay-workers",
        type=worker_counts,
        help="e.g. 1,2,4: search the bundled relay at each worker count",
    )
    m = p.add_argument_group(
        "the embedded mock's load model (without --target; also run's --max-concurrency and "
        "--max-queue)"
    )
    m.add_argument(
        "--slowdown-per-stream",
        type=non_negative_float,
        help="ITL x (1 + F x max(0, active - --slowdown-after)) (default 0.01)",
    )
    m.add_argument(
        "--slowdown-after",
        type=non_negative_int,
        help="active generations before the slowdown starts (default 8)",
    )
    plan = p.add_argument_group("capacity plan")
    plan.add_argument("--peak-rps", type=positive_float, help="your peak in requests/s")
    plan.add_argument(
        "--peak-multiple",
        type=positive_float,
        default=10.0,
        help="without --peak-rps: plan for this multiple of the load found",
    )
    plan.add_argument("--headroom", type=bounded(0, 1, high_open=True), default=0.3)
    plan.add_argument(
        "--replica-cost",
        type=non_negative_float,
        help="infrastructure cost per replica-month (USD)",
    )
    plan.add_argument("--prices", type=Path, help="price table (default reports/prices.toml)")
    return p


def _split(argv: Sequence[str]) -> tuple[Any, list[str]]:
    args, rest = build_parser().parse_known_args(list(argv))
    for arg in rest:
        flag = arg.split("=", 1)[0]
        if flag in NOT_FOR_SEARCH:
            raise UsageError(
                f"relaybench search: {flag} is not a search option: {NOT_FOR_SEARCH[flag]}"
            )
    return args, rest


def _slo(args: Any, target: str) -> SLO:
    if args.slo_file is not None:
        return slo_from_toml(args.slo_file, target)
    return SLO(args.slo_ttft_p95_ms, args.slo_error_rate, args.slo_e2e_p95_ms, args.slo_goodput)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = _split(argv)
    from relaybench.run.cli import parse as parse_run

    run = parse_run([*rest, "--scenario", args.scenario, "--out", str(args.out)])
    flags = [args.slo_ttft_p95_ms, args.slo_error_rate, args.slo_e2e_p95_ms, args.slo_goodput]
    if args.slo_file is None and all(v is None for v in flags):
        raise UsageError(
            "relaybench search: no SLO to search against; give --slo-ttft-p95-ms and/or "
            "--slo-error-rate (also --slo-e2e-p95-ms, --slo-goodput) or --slo-file FILE"
        )
    if args.slo_file is not None and any(v is not None for v in flags):
        raise UsageError("relaybench search: give the SLOs as flags or in --slo-file, not both")
    axis = AXES[args.scenario]
    start = args.start if args.start is not None else DEFAULT_START[axis]
    if axis == "users" and not float(start).is_integer():
        raise UsageError(f"relaybench search: --start {start:g}: users are whole numbers")
    if args.relay_workers and run.targets:
        raise UsageError(
            "relaybench search: --relay-workers searches the bundled relay; leave out --target"
        )
    if run.targets and args.default_target:
        raise UsageError(
            "relaybench search: --default-target picks among our own targets; "
            "with --target, every --target is searched"
        )
    mock = _mock(run.mock, args)
    warnings = _check_probe_length(args.probe_s, None if run.targets else mock, run.load)
    settings = SearchSettings(
        start=float(start),
        precision=args.precision,
        max_probes=args.max_probes,
        probe_s=args.probe_s,
        integer=axis == "users",
        unit=UNITS[axis],
    )
    args.out.mkdir(parents=True, exist_ok=True)
    shown = credentials.redacted_words(argv, [run.load.api_key])  # the key is never written
    doc = _document(shown, args, axis, settings, mock if not run.targets else None, warnings)
    if axis == "rate_scale":
        doc["trace"] = {"file": run.load.traffic.trace_path, **trace_rates(run.load)}
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    search = _Search(args, run, mock, settings, doc)
    try:
        search.run_all()
    except KeyboardInterrupt:
        search.interrupted = True
    finally:
        doc["ended_at"] = _now()
        doc["interrupted"] = search.interrupted
        search.save()
    plans = _report(args.out, doc)
    if any(plans.values()):
        from reports.markdown import plan_markdown

        for name, plan in plans.items():
            if plan:
                print(f"\n## Capacity plan: {name}\n\n{plan_markdown(plan)}\n")
    for name, result in doc["targets"].items():
        print(f"{name}: {result['message']}")
        if result.get("hint"):
            print(f"  what would lift it: {result['hint']}")
    if doc.get("scaling"):
        print(doc["scaling"]["verdict"])
    print(args.out)
    if search.interrupted:
        return 130
    return 0 if all(t["status"] == FOUND for t in doc["targets"].values()) else 1


def _mock(settings: Any, args: Any) -> Any:
    changes = {
        "slowdown_per_stream": args.slowdown_per_stream,
        "slowdown_after": args.slowdown_after,
    }
    return replace(settings, **{k: v for k, v in changes.items() if v is not None})


def _check_probe_length(probe_s: float, mock: Any, load: Any) -> list[str]:
    """Refuse probes shorter than one request of our own mock; warn below a few of them."""
    if mock is None:
        return []
    tokens = (sum(load.max_tokens) / 2) if load.max_tokens else mock.output_tokens
    e2e_s = (mock.ttft_ms + max(tokens - 1, 0) * mock.itl_ms) / 1000
    if probe_s < e2e_s:
        raise UsageError(
            f"relaybench search: --probe-s {probe_s:g} is shorter than one request of the "
            f"embedded mock (about {e2e_s:.1f} s unloaded: TTFT {mock.ttft_ms:g} ms + "
            f"{tokens:g} tokens × {mock.itl_ms:g} ms); a probe must last at least "
            f"{STEADY_E2E_TIMES:g} request times: --probe-s {math.ceil(STEADY_E2E_TIMES * e2e_s)}"
        )
    if probe_s < STEADY_E2E_TIMES * e2e_s:
        return [
            f"--probe-s {probe_s:g} is shorter than {STEADY_E2E_TIMES:g} unloaded request times "
            f"({e2e_s:.1f} s each): by Little's law a probe needs several E2E times before the "
            f"in-flight count settles; these probes end first, so read the results as rough"
        ]
    return []


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _document(argv, args, axis, settings, mock, warnings) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "search",
        "command": shlex.join(["relaybench", "search", *argv]),
        "started_at": _now(),
        "ended_at": None,
        "interrupted": False,
        "scenario": args.scenario,
        "axis": axis,
        "unit": UNITS[axis],
        "settings": settings.as_dict(),
        "mock": mock.as_dict() if mock is not None else None,
        "cpus": os.cpu_count() or 1,
        "warnings": warnings,
        "plan_input": {
            "peak_rps": args.peak_rps,
            "peak_multiple": args.peak_multiple,
            "headroom": args.headroom,
            "replica_cost": args.replica_cost,
            "prices": str(args.prices) if args.prices else None,
        },
        "relay_workers": args.relay_workers,
        "targets": {},
    }


class _Search:
    """Runs every target's search (and every worker count), keeping search.json current."""

    def __init__(self, args: Any, run: Any, mock: Any, settings: SearchSettings, doc: dict):
        self.args, self.run, self.mock, self.settings, self.doc = args, run, mock, settings, doc
        self.interrupted = False

    def save(self) -> None:
        path = self.args.out / "search.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.doc, indent=2) + "\n")
        tmp.replace(path)

    def run_all(self) -> None:
        if self.run.targets:
            for target in self.run.targets:
                if not self._search(target.name, target, None, target.name):
                    return
            return
        counts = self.args.relay_workers
        if not counts:
            self._with_servers([], self.args.default_target or ["relay"], "")
            return
        with ExitStack() as stack:
            redis = stack.enter_context(redis_server()) if max(counts) > 1 else None
            capacities, statuses, lows = {}, {}, {}
            for workers in counts:
                relay_args = ["--workers", str(workers)] if workers > 1 else []
                if redis and workers > 1:
                    relay_args += ["--redis-url", redis]
                if not self._with_servers(relay_args, ["relay"], f"-w{workers}"):
                    return
                result = self.doc["targets"][f"relay-w{workers}"]
                capacities[workers] = result["capacity"]
                statuses[workers] = result["status"]
                lows[workers] = result["bracket"]["low"]
                self.doc["scaling"] = scaling(capacities, statuses, self.doc["cpus"], lows)
                self.save()

    def _with_servers(self, relay_args: list[str], names: list[str], suffix: str) -> bool:
        from relaybench.run.orchestrator import default_targets
        from relaybench.run.servers import BenchServers

        servers = BenchServers(self.mock, relay_args)
        try:
            servers.start()
            assert servers.mock is not None
            targets = {t.name: t for t in default_targets(servers)}
            for name in dict.fromkeys(names):
                key = name + suffix
                if not self._search(key, replace(targets[name], name=key), servers, name):
                    return False
            return True
        finally:
            servers.stop()

    def _search(self, key: str, target: Any, servers: Any, base: str) -> bool:
        """One target's search (``base``: its name in an SLO file); False when interrupted."""
        slo = _slo(self.args, base)
        mock_url = servers.mock.url if servers is not None else None
        template = replace(self.run.load, api_key=servers.api_key) if servers else self.run.load
        probe = RunProbe(
            out_dir=self.args.out / "probes" / key,
            target=target,
            template=template,
            slo=slo,
            scenario=self.args.scenario,
            command=self.doc["command"],
            users=self.run.load.shape.users,
            mock_url=mock_url,
            mock=self.mock if servers is not None else None,
            e2e_guess_s=_e2e_guess(self.mock, self.run.load) if servers else 10.0,
            **(_scrape(servers) if servers is not None else {}),
        )
        entry: dict[str, Any] = {
            "url": credentials.redact_url(target.url),
            "kind": target.kind,
            "stream": target.stream,
            "slo": slo.as_dict(),
            "status": "running",
            "probes": [],
        }
        self.doc["targets"][key] = entry
        print(
            f"== search {key}: {slo.describe()}; {self.doc['axis']} from "
            f"{self.settings.start:g} {self.settings.unit}",
            flush=True,
        )

        def recorded(req):  # keep search.json current after every probe
            result = probe(req)
            if result.folder:  # relative: a copied search folder still finds its probes
                result.folder = os.path.relpath(result.folder, self.args.out)
            entry["probes"].append(result.as_dict())
            self.save()
            return result

        outcome = find_capacity(recorded, self.settings)
        entry.update(outcome.as_dict())
        self.save()
        if outcome.status == INTERRUPTED:
            self.interrupted = True
            return False
        return True


def _scrape(servers: Any) -> dict[str, list]:
    """Sample our relay and mock in every probe: the plan's CPU and RSS per replica."""
    pids = [(s.name, s.pid) for s in (servers.relay, servers.mock) if s and s.pid is not None]
    return {"scrape_pids": pids, "scrape_urls": [("relay", servers.relay.url + "/metrics")]}


def _e2e_guess(mock: Any, load: Any) -> float:
    tokens = max(load.max_tokens) if load.max_tokens else mock.output_tokens
    return (mock.ttft_ms + tokens * mock.itl_ms) / 1000


def _report(out: Path, doc: dict) -> dict[str, Any]:
    """Write the report; each target's capacity plan (empty when there is nothing to plan)."""
    try:
        from reports.search import write_search_report
    except ImportError:  # the report is optional; search.json is not
        return {}
    return write_search_report(out, doc)
