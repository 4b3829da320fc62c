"""``relaybench calibrate``: how wrong is the harness, and how much load can it make?

The harness runs against our mock with no time to first token at rising concurrency, one Locust
process, and reads the mock's emission stamps:

- the *floor*: first-token and chunk lag (client arrival − emission stamp) p50/p99 per level —
  the measurement error every ``direct`` number carries at that load;
- the *capacity*: the most concurrent streams (and chunks/s) one Locust process holds before
  it breaks — its CPU above ``CPU_BOUND_PCT`` or errors — and, separately, the most it holds
  while its chunk-lag p99 stays under ``LAG_P99_BOUND_MS`` (precision). A level where the mock
  itself fell behind (its own emission lateness) still counts as held if the harness did, but
  ends the climb: above it the mock, not the harness, is measured. Reasons are printed.

Each level is a real ``relaybench run`` folder (summary by ``reports.summary``), so the numbers
are computed exactly as in any run. ``relaybench run --calibration FILE`` stores the result in
the run's ``run.json`` for the report to compare against.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from relaybench.cliargs import Parser, duration_s, non_negative_float, positive_int
from relaybench.procs import ServerProcess
from relaybench.run.config import LoadConfig, ShapeParams, Target
from relaybench.run.orchestrator import Orchestrator, RunPlan, environment
from relaybench.run.servers import wait_healthy

LEVELS = (10, 50, 100, 250, 500)
LAG_P99_BOUND_MS = 5.0
CPU_BOUND_PCT = 90.0
MOCK_LATENESS_P99_BOUND_MS = 20.0


def _cpu(run_dir: Path, target: str) -> dict[str, float]:
    """The load generator's CPU while loaded (samples with users > 0)."""
    values = []
    for path in (run_dir / "loadgen").glob(f"{target}.w*.jsonl"):
        for line in path.read_bytes().splitlines():
            row = orjson.loads(line)
            if row.get("users"):
                values.append(float(row["cpu_pct"]))
    if not values:
        return {"mean": 0.0, "max": 0.0}
    return {"mean": round(statistics.fmean(values), 1), "max": round(max(values), 1)}


def _p(stats: dict[str, Any] | None, *keys: str) -> dict[str, float | None]:
    return {k: (stats or {}).get(k) for k in keys}


def level_row(level: int, run_dir: Path, summary: dict[str, Any], target: str) -> dict[str, Any]:
    t = summary["targets"][target]
    mock = orjson.loads((run_dir / "mock_stats" / f"{target}.json").read_bytes())
    lateness = (mock.get("lateness_ms") or {}).get("p99")
    cpu = _cpu(run_dir, target)
    row = {
        "streams": level,
        "requests": t["requests"],
        "error_rate": t.get("error_rate", 0.0),
        "requests_per_s": t["requests_per_s"],
        "chunks_per_s": t["output_tokens_per_s"],  # one token per chunk
        "first_token_lag_ms": _p(t["first_token_lag_ms"], "p50", "p99", "max"),
        "chunk_lag_ms": _p(t["chunk_lag_ms"], "p50", "p99", "max"),
        "loadgen_cpu_pct": cpu,
        "mock_lateness_p99_ms": lateness,
    }
    broken, imprecise = [], []
    if (row["chunk_lag_ms"]["p99"] or 0.0) > LAG_P99_BOUND_MS:
        p99 = row["chunk_lag_ms"]["p99"]
        imprecise.append(f"chunk lag p99 {p99:.1f} ms > {LAG_P99_BOUND_MS:g}")
    if cpu["mean"] > CPU_BOUND_PCT:
        broken.append(f"load generator CPU {cpu['mean']:.0f}% > {CPU_BOUND_PCT:g}%")
    if row["error_rate"]:
        broken.append(f"error rate {row['error_rate']:.1%}")
    mock_bound = []
    if lateness is not None and lateness > MOCK_LATENESS_P99_BOUND_MS:
        mock_bound.append(f"the mock fell behind (lateness p99 {lateness:.0f} ms)")
    row["broken"] = broken
    row["imprecise"] = imprecise
    row["mock_bound"] = mock_bound
    return row


def measure(
    levels: Sequence[int],
    *,
    duration_s: float,
    itl_ms: float,
    tokens: int,
    work_dir: Path,
    stop_after_break: bool = True,
) -> list[dict[str, Any]]:
    """Run the harness against a fresh zero-TTFT mock at each concurrency level."""
    mock_args = ["--ttft-ms", "0", "--itl-ms", f"{itl_ms:g}", "--output-tokens", str(tokens)]
    base = ["-m", "mock_upstream", "--host", "127.0.0.1", "--port", "0"]
    rows: list[dict[str, Any]] = []
    with ServerProcess("mock", [*base, *mock_args]) as mock:
        wait_healthy(mock.url)
        target = Target("direct", mock.url, stream=True, kind="mock", stamps=True)
        for level in levels:
            run_dir = work_dir / f"c{level}"
            shape = ShapeParams("steady", users=level, duration_s=duration_s)
            load = LoadConfig(run_dir=str(run_dir), target=target, shape=shape, max_tokens=None)
            plan = RunPlan(
                run_dir=run_dir,
                command=f"relaybench calibrate (level {level})",
                load=load,
                targets=[target],
                mock_url=mock.url,
                full_report=False,
            )
            print(f"-- {level} concurrent streams, {duration_s:g} s", flush=True)
            orch = Orchestrator(plan)
            summary = orch.run()
            if orch.interrupted or summary is None:
                break
            row = level_row(level, run_dir, summary, "direct")
            rows.append(row)
            print("   " + format_row(row), flush=True)
            if (row["broken"] or row["mock_bound"]) and stop_after_break:
                break
    return rows


def format_row(row: dict[str, Any]) -> str:
    ft, ch = row["first_token_lag_ms"], row["chunk_lag_ms"]
    text = (
        f"streams {row['streams']:4d}  chunks/s {row['chunks_per_s']:8.0f}  "
        f"first-token lag p50 {ft['p50'] or 0:.2f} p99 {ft['p99'] or 0:.2f} ms  "
        f"chunk lag p50 {ch['p50'] or 0:.2f} p99 {ch['p99'] or 0:.2f} ms  "
        f"CPU {row['loadgen_cpu_pct']['mean']:.0f}% (max {row['loadgen_cpu_pct']['max']:.0f}%)"
    )
    if row["imprecise"]:
        text += f"  IMPRECISE: {'; '.join(row['imprecise'])}"
    if row.get("mock_bound"):
        text += f"  MOCK-BOUND: {'; '.join(row['mock_bound'])}"
    return text + (f"  BROKEN: {'; '.join(row['broken'])}" if row["broken"] else "")


def capacity(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The highest level that held, what broke at the next one, and how far lag stayed low."""
    held = [r for r in rows if not r["broken"]]
    best = max(held, key=lambda r: r["streams"]) if held else None
    broke = next((r for r in rows if r["broken"]), None)
    precise = [r["streams"] for r in held if not r.get("imprecise")]
    return {
        "precise_up_to_streams": max(precise, default=0),
        "imprecise_at": {str(r["streams"]): r["imprecise"] for r in rows if r.get("imprecise")},
        "streams_per_process": best["streams"] if best else 0,
        "chunks_per_s_per_process": best["chunks_per_s"] if best else 0.0,
        "broke_at_streams": broke["streams"] if broke else None,
        "broke_because": broke["broken"] if broke else [],
        "mock_bound_at_streams": next((r["streams"] for r in rows if r.get("mock_bound")), None),
        "tested_up_to": max((r["streams"] for r in rows), default=0),
    }


def precision_text(cap: dict[str, Any]) -> str:
    """How far the chunk lag stayed within its bound, in words."""
    if cap["precise_up_to_streams"]:
        return (
            f"chunk lag p99 <= {LAG_P99_BOUND_MS:g} ms up to {cap['precise_up_to_streams']} streams"
        )
    if not cap["streams_per_process"]:
        return "no level held, so no precision either"
    return f"chunk lag p99 over {LAG_P99_BOUND_MS:g} ms at every level that held"


def _levels(text: str) -> list[int]:
    """``10,50,100`` -> sorted distinct positive stream counts."""
    try:
        levels = sorted({positive_int(x.strip()) for x in text.split(",") if x.strip()})
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r}: {exc}; use positive integers, e.g. 10,50"
        ) from None
    if not levels:
        raise argparse.ArgumentTypeError(f"{text!r}: name at least one stream count, e.g. 10,50")
    return levels


def build_parser() -> Parser:
    p = Parser(
        prog="relaybench calibrate",
        description="How wrong is the harness, and how much load can it make? Runs the load "
        "generator against a zero-TTFT mock at rising concurrency and writes the measurement "
        "floor (first-token and chunk lag) and one Locust process's capacity as JSON.",
    )
    p.add_argument("--out", type=Path, default=Path("runs/calibration.json"), help="JSON file")
    p.add_argument(
        "--levels",
        type=_levels,
        default=list(LEVELS),
        help="concurrent streams, comma-separated (default: " + ",".join(map(str, LEVELS)) + ")",
    )
    p.add_argument("--duration", type=duration_s, default=5.0, help="per level: seconds or 5s, 1m")
    p.add_argument(
        "--itl-ms", type=non_negative_float, default=20.0, help="mock time between chunks"
    )
    p.add_argument("--tokens", type=positive_int, default=40, help="chunks per stream")
    p.add_argument("--keep", type=Path, help="keep the per-level run folders here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    levels = args.levels
    with tempfile.TemporaryDirectory(prefix="relaybench-calibrate-") as tmp:
        work = args.keep or Path(tmp)
        rows = measure(
            levels, duration_s=args.duration, itl_ms=args.itl_ms, tokens=args.tokens, work_dir=work
        )
    result = {
        "schema_version": 1,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mock": {"ttft_ms": 0, "itl_ms": args.itl_ms, "tokens": args.tokens},
        "bounds": {
            "chunk_lag_p99_ms": LAG_P99_BOUND_MS,
            "cpu_pct": CPU_BOUND_PCT,
            "mock_lateness_p99_ms": MOCK_LATENESS_P99_BOUND_MS,
        },
        "levels": rows,
        "floor": {
            str(r["streams"]): {
                "first_token_lag_ms": r["first_token_lag_ms"],
                "chunk_lag_ms": r["chunk_lag_ms"],
            }
            for r in rows
        },
        "capacity": capacity(rows),
        "environment": environment(1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(
        orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    )
    cap = result["capacity"]
    print(
        f"\nharness capacity: {cap['streams_per_process']} concurrent streams, "
        f"{cap['chunks_per_s_per_process']:.0f} chunks/s per Locust process; {precision_text(cap)}"
        + (
            f"; broke at {cap['broke_at_streams']}: {'; '.join(cap['broke_because'])}"
            if cap["broke_at_streams"]
            else f"; the mock was the limit from {cap['mock_bound_at_streams']} streams"
            if cap["mock_bound_at_streams"]
            else f" (held up to {cap['tested_up_to']}, the top level)"
        )
    )
    print(args.out)
    return 0
