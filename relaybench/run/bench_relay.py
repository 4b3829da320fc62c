"""``make bench-relay``: the relay's overhead versus direct, and the load generator's capacity.

1. Our mock and relay on loopback; at 10, 50 and 100 concurrent streams, the same seeded load
   runs ``direct`` (the mock) and then ``relay`` (through the relay). Added TTFT is relay minus
   direct TTFT; added chunk lag is relay minus direct chunk lag (client arrival − the mock's
   emission stamp, so the harness's own error cancels out). p50 with the 95% bootstrap interval
   from ``reports.summary``'s ``overhead`` block, p99 as the difference of the two p99s.
2. The direct first-token lag at 100 streams: the harness's own measurement error there.
3. Capacity: ``relaybench calibrate``'s rising-concurrency run (one Locust process).
4. With ``--scrape-compare``: every level once more with the server view on (the relay's
   ``/metrics``, the relay's and the mock's processes, the mock's stats, once a second), printing
   added TTFT p50 and the harness's own CPU (load generator mean + the scraper's threads) both
   ways: scraping must not move the first and may add at most 1 percentage point to the second.

Targets (printed as met / missed): added TTFT p50 ≤ 1 ms and p99 ≤ 5 ms at 100 streams; direct
first-token lag p50 ≤ 0.5 ms and p99 ≤ 2 ms at 100 streams; ≥ 500 streams per Locust process.
Everything shares this machine's cores (mock, relay, load generator, and whatever else runs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from relaybench.run import calibrate
from relaybench.run.config import LoadConfig, ShapeParams, Target
from relaybench.run.orchestrator import Orchestrator, RunPlan, environment
from relaybench.run.servers import BenchServers, MockSettings

LEVELS = (10, 50, 100)
CAPACITY_LEVELS = (250, 500, 1000)
CAPACITY_ITL_MS = 100.0  # 10 chunks/s per stream: concurrency, not the mock's chunk rate, is tested
CAPACITY_TOKENS = 30
# The steady shape starts every user within half a second, so the first round of requests is a
# synchronized burst no real steady state has. "steady" figures leave out requests sent in the
# first WARMUP_S seconds (about two request lifetimes at the bench's mock settings).
WARMUP_S = 2.5


def _get(stats: dict[str, Any] | None, key: str) -> float | None:
    return None if not stats else stats.get(key)


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(b - a, 3)


def overhead_row(level: int, summary: dict[str, Any]) -> dict[str, Any]:
    d, r = summary["targets"]["direct"], summary["targets"]["relay"]
    over = (summary.get("overhead") or {}).get("relay", {})
    return {
        "streams": level,
        "requests": {"direct": d["requests"], "relay": r["requests"]},
        "errors": {"direct": d["errors"], "relay": r["errors"]},
        "added_ttft_ms": {
            "p50": _diff(_get(d["ttft_ms"], "p50"), _get(r["ttft_ms"], "p50")),
            "p50_ci": over.get("added_ttft_ms_p50"),
            "p99": _diff(_get(d["ttft_ms"], "p99"), _get(r["ttft_ms"], "p99")),
        },
        "added_chunk_lag_ms": {
            "p50": _diff(_get(d["chunk_lag_ms"], "p50"), _get(r["chunk_lag_ms"], "p50")),
            "p50_ci": over.get("added_chunk_lag_ms_p50"),
            "p99": _diff(_get(d["chunk_lag_ms"], "p99"), _get(r["chunk_lag_ms"], "p99")),
        },
        "direct_first_token_lag_ms": {
            "p50": _get(d["first_token_lag_ms"], "p50"),
            "p99": _get(d["first_token_lag_ms"], "p99"),
        },
        "loadgen_cpu_max_pct": summary["health"]["loadgen_cpu_max_pct"],
        "health": summary["health"],
    }


def steady_state(run_dir: Path, warmup_s: float = WARMUP_S) -> dict[str, dict[str, Any]]:
    """Per target: TTFT and first-token lag stats of successful requests sent after warm-up."""
    from reports.records import load_records  # reports is only needed once a run has ended
    from reports.samples import ok, select, steady
    from reports.stats import stats

    records = load_records(run_dir)
    out: dict[str, dict[str, Any]] = {}
    for name, rows in records.frame.groupby("target"):
        kept = ok(steady(rows, warmup_s))
        out[str(name)] = {
            metric: stats(select(records, kept, metric).values)
            for metric in ("ttft_ms", "first_token_lag_ms")
        }
    return out


def steady_row(level: int, run_dir: Path) -> dict[str, Any]:
    per = steady_state(run_dir)
    d, r = per["direct"], per["relay"]
    return {
        "warmup_s": WARMUP_S,
        "requests": {"direct": d["ttft_ms"]["count"], "relay": r["ttft_ms"]["count"]},
        "added_ttft_ms": {
            q: _diff(_get(d["ttft_ms"], q), _get(r["ttft_ms"], q)) for q in ("p50", "p99")
        },
        "direct_first_token_lag_ms": {q: _get(d["first_token_lag_ms"], q) for q in ("p50", "p99")},
    }


def harness_cpu(run_dir: Path) -> dict[str, float | None]:
    """The harness's own CPU in a run, % of one core: the load generator's mean (``loadgen/``)
    plus the scraper threads' CPU over their wall time (``server/sources.json``)."""
    from relaybench.scrape.samples import status

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


def run_overhead(
    levels: Sequence[int], duration_s: float, work: Path, *, scrape: bool = False
) -> list[dict[str, Any]]:
    servers = BenchServers(
        MockSettings(
            ttft_ms=100, itl_ms=20, output_tokens=50, max_concurrency=0, slowdown_per_stream=0
        )
    )
    rows = []
    try:
        servers.start()
        assert servers.mock and servers.relay
        targets = [
            Target("direct", servers.mock.url, stream=True, kind="mock", stamps=True),
            Target("relay", servers.relay.url, stream=True, kind="relay", stamps=True),
        ]
        for level in levels:
            run_dir = work / f"overhead-{level}{'-scraped' if scrape else ''}"
            load = LoadConfig(
                run_dir=str(run_dir),
                target=targets[0],
                shape=ShapeParams("steady", users=level, duration_s=duration_s),
                api_key=servers.api_key,
                max_tokens=None,
            )
            plan = RunPlan(
                run_dir=run_dir,
                command=f"bench_relay overhead {level}",
                load=load,
                targets=targets,
                mock_url=servers.mock.url,
                full_report=False,
                scrape_urls=[("relay", servers.relay.url + "/metrics")] if scrape else [],
                scrape_pids=[("relay", servers.relay.pid), ("mock", servers.mock.pid)]
                if scrape and servers.relay.pid and servers.mock.pid
                else [],
                scrape_servers=scrape,  # the mock's /mock/stats
            )
            orch = Orchestrator(plan)
            summary = orch.run()
            if orch.interrupted or summary is None:
                break
            rows.append(overhead_row(level, summary))
            rows[-1]["steady"] = steady_row(level, run_dir)
            rows[-1]["scrape"] = scrape
            rows[-1]["harness_cpu"] = harness_cpu(run_dir)
            print("   " + format_overhead(rows[-1]), flush=True)
    finally:
        servers.stop()
    return rows


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def format_overhead(row: dict[str, Any]) -> str:
    t, c, lag = row["added_ttft_ms"], row["added_chunk_lag_ms"], row["direct_first_token_lag_ms"]
    return (
        f"streams {row['streams']:3d}: added TTFT p50 {_f(t['p50'])} p99 {_f(t['p99'])} ms | "
        f"added chunk lag p50 {_f(c['p50'])} p99 {_f(c['p99'])} ms | "
        f"direct first-token lag p50 {_f(lag['p50'])} p99 {_f(lag['p99'])} ms | "
        f"loadgen CPU max {row['loadgen_cpu_max_pct']:.0f}%" + _format_steady(row.get("steady"))
    )


def _format_steady(steady: dict[str, Any] | None) -> str:
    if not steady:
        return ""
    t, lag = steady["added_ttft_ms"], steady["direct_first_token_lag_ms"]
    return (
        f"\n{'':16}steady (after {steady['warmup_s']:g} s): added TTFT p50 {_f(t['p50'])} "
        f"p99 {_f(t['p99'])} ms | direct first-token lag p50 {_f(lag['p50'])} "
        f"p99 {_f(lag['p99'])} ms"
    )


def _ci(block: dict[str, Any] | None) -> str:
    return f"[{_f(block['ci_low'])}, {_f(block['ci_high'])}]" if block else "[n/a]"


def format_scrape_compare(off: dict[str, Any], on: dict[str, Any]) -> str:
    """One level, scraping off versus on: added TTFT p50 (95% CI) and the harness's CPU."""
    a, b = off["added_ttft_ms"]["p50_ci"], on["added_ttft_ms"]["p50_ci"]
    noise = "n/a"
    if a and b:
        overlap = a["ci_low"] <= b["ci_high"] and b["ci_low"] <= a["ci_high"]
        noise = "within noise" if overlap else "DIFFERENT"
    ca, cb = off["harness_cpu"], on["harness_cpu"]
    rise = None
    if ca["total_pct"] is not None and cb["total_pct"] is not None:
        rise = round(cb["total_pct"] - ca["total_pct"], 2)
    return (
        f"streams {off['streams']:3d}: added TTFT p50 off {_f(off['added_ttft_ms']['p50'])} "
        f"{_ci(a)} ms, on {_f(on['added_ttft_ms']['p50'])} {_ci(b)} ms ({noise}) | harness CPU "
        f"off {_f(ca['total_pct'])}% (scraper {ca['scraper_pct']:.2f}), on "
        f"{_f(cb['total_pct'])}% (scraper {cb['scraper_pct']:.2f}): {_f(rise)} points, "
        f"<= 1 point: {_verdict(rise, 1.0)}"
    )


def _verdict(value: float | None, limit: float, *, at_least: bool = False) -> str:
    if value is None:
        return "n/a"
    ok = value >= limit if at_least else value <= limit
    return "met" if ok else "MISSED"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m relaybench.run.bench_relay")
    p.add_argument("--duration", type=float, default=8.0, help="seconds per target and level")
    p.add_argument("--capacity-duration", type=float, default=8.0)
    p.add_argument("--out", type=Path, help="JSON result (default runs/bench-relay-<ts>.json)")
    p.add_argument("--skip-capacity", action="store_true")
    p.add_argument(
        "--scrape-compare",
        action="store_true",
        help="also run every level with the server view on; print both ways",
    )
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or Path("runs") / f"bench-relay-{stamp}.json"
    with tempfile.TemporaryDirectory(prefix="relaybench-bench-") as tmp:
        print("== relay overhead versus direct (mock TTFT 100 ms, 20 ms x 50 chunks)", flush=True)
        rows = run_overhead(LEVELS, args.duration, Path(tmp))
        scraped: list[dict[str, Any]] = []
        if args.scrape_compare:
            print("== the same with the server view on (scraping every 1 s)", flush=True)
            scraped = run_overhead(LEVELS, args.duration, Path(tmp), scrape=True)
        cap_rows: list[dict[str, Any]] = []
        if not args.skip_capacity:
            print(
                "== load generator capacity (one Locust process, zero-TTFT mock, "
                f"{CAPACITY_ITL_MS:g} ms x {CAPACITY_TOKENS} chunks per stream)",
                flush=True,
            )
            cap_rows = calibrate.measure(
                CAPACITY_LEVELS,
                duration_s=args.capacity_duration,
                itl_ms=CAPACITY_ITL_MS,
                tokens=CAPACITY_TOKENS,
                work_dir=Path(tmp) / "capacity",
            )
    cap = calibrate.capacity(cap_rows) if cap_rows else None
    print("\n== results")
    for row in rows:
        print("  " + format_overhead(row))
    if scraped:
        print("  scraping off versus on (relay /metrics, relay and mock PIDs, mock stats):")
        for off, on in zip(rows, scraped, strict=False):
            print("    " + format_scrape_compare(off, on))
    at100 = next((r for r in rows if r["streams"] == 100), None)
    if at100:
        for label, row in (("all requests", at100), ("steady state", at100["steady"])):
            t, lag = row["added_ttft_ms"], row["direct_first_token_lag_ms"]
            print(f"  targets at 100 streams, {label}:")
            print(f"    added TTFT p50 <= 1 ms: {_verdict(t['p50'], 1.0)}")
            print(f"    added TTFT p99 <= 5 ms: {_verdict(t['p99'], 5.0)}")
            print(f"    direct first-token lag p50 <= 0.5 ms: {_verdict(lag['p50'], 0.5)}")
            print(f"    direct first-token lag p99 <= 2 ms: {_verdict(lag['p99'], 2.0)}")
    if cap:
        for row in cap_rows:
            print("  " + calibrate.format_row(row))
        print(
            f"  capacity: {cap['streams_per_process']} streams, "
            f"{cap['chunks_per_s_per_process']:.0f} chunks/s per Locust process "
            f"(chunk lag p99 <= 5 ms up to {cap['precise_up_to_streams']}); "
            f"target >= 500 streams: {_verdict(cap['streams_per_process'], 500, at_least=True)}"
            + (
                f" (broke at {cap['broke_at_streams']}: {'; '.join(cap['broke_because'])})"
                if cap["broke_at_streams"]
                else ""
            )
            + (
                f" (the mock fell behind from {cap['mock_bound_at_streams']} streams)"
                if cap["mock_bound_at_streams"]
                else ""
            )
        )
    result = {
        "overhead": rows,
        "overhead_scraped": scraped,
        "capacity_levels": cap_rows,
        "capacity": cap,
        "environment": environment(1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
