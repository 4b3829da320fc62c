"""Does the server view disturb the measurement? ``bench_relay --scrape-compare``'s verdict.

Each run of the relay bench is made twice in turn on the same servers, scraping off and on, the
order alternating from pair to pair (off first, then on first), so a drift within a pair does not
always count against the same side. Within one run the bootstrap interval of the relay's added
TTFT p50 is a few tenths of a millisecond, but from run to run the figure moves by more than
that with nothing changed (the direct baseline and the relay are measured seconds apart, and this
machine's timing drifts between them). So "within noise" is judged across the pairs: the paired
t interval (``scipy.stats.ttest_rel``) of on minus off; within noise when the 95% interval
contains 0, and its upper end is the largest rise the pairs leave possible. It takes two pairs
whose differences are not all the same; otherwise each pair's own bootstrap intervals are
compared instead (they overlap or not).

The same is done for the relay's added first-token lag (client arrival minus the mock's emission
stamp, relay minus direct): it leaves out the mock's own timing, so it shows a disturbance of the
relay's forwarding at a finer grain. The harness's CPU is compared pair by pair (on minus off,
points of one core); the target is a median rise of at most 1 point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from scipy import stats as st

from relaybench.scrape.samples import status

CPU_RISE_LIMIT = 1.0  # percentage points of one core
# (label, the path in a bench row to the run's value, the path to its bootstrap interval)
COMPARED = (
    ("added TTFT p50", ("added_ttft_ms", "p50"), ("added_ttft_ms", "p50_ci")),
    (
        "added first-token lag p50",
        ("added_first_token_lag_ms", "p50"),
        ("added_first_token_lag_ms", "p50_ci"),
    ),
)


def harness_cpu(run_dir: Path) -> dict[str, float | None]:
    """The harness's own CPU in a run, % of one core: the load generator's mean (``loadgen/``)
    plus the scraper threads' CPU over their wall time (``server/sources.json``)."""
    loadgen = [
        orjson.loads(line)["cpu_pct"]
        for path in (run_dir / "loadgen").glob("*.jsonl")
        for line in path.read_bytes().splitlines()
        if line.strip()
    ]
    scraped = status(run_dir)
    cpu = [s["cpu_s"] for s in scraped.get("sources") or [] if s.get("cpu_s") is not None]
    wall = scraped.get("wall_s")
    scraper = 100.0 * sum(cpu) / wall if wall else 0.0
    mean = sum(loadgen) / len(loadgen) if loadgen else None
    return {
        "loadgen_mean_pct": None if mean is None else round(mean, 2),
        "scraper_pct": round(scraper, 3),
        "total_pct": None if mean is None else round(mean + scraper, 2),
    }


def value_at(row: dict[str, Any], path: Sequence[str]) -> Any:
    """``row[path[0]][path[1]]...``, or None where a step is missing."""
    value: Any = row
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _overlap(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool | None:
    if not a or not b:
        return None
    return bool(a["ci_low"] <= b["ci_high"] and b["ci_low"] <= a["ci_high"])


def _r(x: float) -> float:
    return round(float(x), 3)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def pairs(
    off_rows: Sequence[dict[str, Any]], on_rows: Sequence[dict[str, Any]]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Off and on rows of the same level and run (``rep``), in run order."""
    on = {(r["streams"], r.get("rep", 1)): r for r in on_rows}
    out = []
    for a in off_rows:
        b = on.get((a["streams"], a.get("rep", 1)))
        if b is not None:
            out.append((a, b))
    return out


def metric_effect(
    matched: Sequence[tuple[dict[str, Any], dict[str, Any]]],
    value: Sequence[str],
    interval: Sequence[str],
) -> dict[str, Any] | None:
    """One figure both ways over the pairs where both runs have it: the runs' values, their
    medians and the verdict (see the module docstring). None when no pair has it."""
    kept = [
        (a, b) for a, b in matched if _finite(value_at(a, value)) and _finite(value_at(b, value))
    ]
    if not kept:
        return None
    off = np.array([value_at(a, value) for a, _ in kept], dtype=float)
    on = np.array([value_at(b, value) for _, b in kept], dtype=float)
    diff = on - off
    out: dict[str, Any] = {
        "pairs": len(kept),
        "off": [_r(v) for v in off],
        "on": [_r(v) for v in on],
        "off_median": _r(np.median(off)),
        "on_median": _r(np.median(on)),
        "difference": _r(np.mean(diff)),
    }
    if len(kept) >= 2 and np.ptp(diff) > 0:
        test = st.ttest_rel(on, off)
        ci = test.confidence_interval(0.95)
        out.update(
            test="paired-t",
            ci_low=_r(ci.low),
            ci_high=_r(ci.high),
            p_value=_r(test.pvalue),
            within_noise=bool(ci.low <= 0.0 <= ci.high),
        )
        return out
    overlaps = [_overlap(value_at(a, interval), value_at(b, interval)) for a, b in kept]
    known = [o for o in overlaps if o is not None]
    out.update(
        test="bootstrap-overlap",
        reason="one pair" if len(kept) < 2 else "the same difference in every pair",
        within_noise=all(known) if known else None,
    )
    return out


def cpu_effect(matched: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any] | None:
    """The harness's CPU rise, pair by pair (on minus off), its median and verdict."""
    both = [
        (a["harness_cpu"]["total_pct"], b["harness_cpu"]["total_pct"], b["harness_cpu"])
        for a, b in matched
    ]
    kept = [(x, y, cpu) for x, y, cpu in both if _finite(x) and _finite(y)]
    if not kept:
        return None
    median = _r(np.median([y - x for x, y, _ in kept]))
    return {
        "rises": [_r(y - x) for x, y, _ in kept],
        "median": median,
        "scraper_pct": _r(np.median([cpu["scraper_pct"] for _, _, cpu in kept])),
        "met": median <= CPU_RISE_LIMIT,
    }


def scrape_effect(
    off_rows: Sequence[dict[str, Any]], on_rows: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per level (streams), every compared figure and the CPU rise, over matched pairs."""
    out = []
    matched = pairs(off_rows, on_rows)
    for level in sorted({a["streams"] for a, _ in matched}):
        mine = [(a, b) for a, b in matched if a["streams"] == level]
        figures = {
            label: metric_effect(mine, value, interval) for label, value, interval in COMPARED
        }
        out.append(
            {"streams": level, "pairs": len(mine), "figures": figures, "cpu": cpu_effect(mine)}
        )
    return out


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _verdict(ok: bool | None, yes: str, no: str) -> str:
    return "n/a" if ok is None else yes if ok else no


def format_pair(off: dict[str, Any], on: dict[str, Any]) -> str:
    """One pair of runs: added TTFT p50 with its within-run 95% interval, and the harness CPU."""
    a, b = off["added_ttft_ms"]["p50_ci"], on["added_ttft_ms"]["p50_ci"]
    ca, cb = off["harness_cpu"], on["harness_cpu"]

    def ci(block: dict[str, Any] | None) -> str:
        return f"[{_f(block['ci_low'])}, {_f(block['ci_high'])}]" if block else "[n/a]"

    return (
        f"run {off.get('rep', 1)}: added TTFT p50 off {_f(off['added_ttft_ms']['p50'])} {ci(a)} "
        f"ms, on {_f(on['added_ttft_ms']['p50'])} {ci(b)} ms | harness CPU off "
        f"{_f(ca['total_pct'])}%, on {_f(cb['total_pct'])}% (scraper {cb['scraper_pct']:.2f})"
    )


def format_effect(level: dict[str, Any]) -> list[str]:
    """The verdict lines of one level."""
    count = "1 pair" if level["pairs"] == 1 else f"{level['pairs']} pairs"
    lines = [f"streams {level['streams']} ({count} of runs, off and on):"]
    for label, fig in level["figures"].items():
        if fig is None:
            lines.append(f"  {label}: n/a")
            continue
        values = f"off {' / '.join(map(_f, fig['off']))}, on {' / '.join(map(_f, fig['on']))} ms"
        if fig["test"] == "paired-t":
            how = (
                f"on - off {fig['difference']:+.2f} ms, 95% CI [{_f(fig['ci_low'])}, "
                f"{_f(fig['ci_high'])}] (paired t, p={fig['p_value']:.2f})"
            )
        else:
            how = f"{fig['reason']}: each pair's bootstrap intervals"
        verdict = _verdict(fig["within_noise"], "within noise", "DIFFERENT")
        lines.append(
            f"  {label}: median off {_f(fig['off_median'])}, on {_f(fig['on_median'])} ms "
            f"({values}); {how}: {verdict}"
        )
    cpu = level["cpu"]
    if cpu:
        rises = " / ".join(f"{x:+.2f}" for x in cpu["rises"])
        lines.append(
            f"  harness CPU rise: median {cpu['median']:+.2f} points ({rises}; the scraper "
            f"threads {cpu['scraper_pct']:.2f}% of a core), <= {CPU_RISE_LIMIT:g} point: "
            + _verdict(cpu["met"], "met", "MISSED")
        )
    return lines
