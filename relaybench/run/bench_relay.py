"""``make bench-relay``: the relay's overhead versus direct, and the load generator's capacity.

1. Our mock, our relay and nginx (the reference proxy, ``proxy_buffering off``, one worker,
   configured by ``relaybench.run.nginx`` in a temp dir) on loopback; at 10, 50 and 100
   streams in flight (and 200 when the load generator stayed healthy at 100; open loop, requests
   arriving on a constant schedule, see ``STREAM_S``), the same seeded load runs ``direct`` (the
   mock), then ``relay``, then ``nginx``, in one run; each level runs
   ``--repeat`` times (3). Added TTFT is a proxy's TTFT minus direct TTFT; added chunk lag is its
   chunk lag minus direct's (client arrival − the mock's emission stamp, so the harness's own
   error cancels out). p50 with the 95% bootstrap interval from ``reports.summary``'s
   ``overhead`` block, p99 as the difference of the two p99s. CPU per chunk is the proxy's
   process CPU time over the run (nginx: master and worker) ÷ the content chunks its clients
   received; each proxy idles while the others are measured. Per level the median of the runs
   and their spread (min–max) are printed, with the relay's figures as ratios to nginx's.
2. The direct first-token lag at 100 streams: the harness's own measurement error there.
3. Capacity: ``relaybench calibrate``'s rising-concurrency run (one Locust process).
4. With ``--scrape-compare``: every run once more, right after it on the same servers, with the
   server view on (the relay's ``/metrics``, the relay's and the mock's processes, the mock's
   stats, once a second), printing added TTFT p50 and the harness's own CPU (load generator mean
   + the scraper's threads) both ways: scraping must leave the first within run-to-run noise and
   may add at most 1 percentage point to the second (``relaybench.run.scrapecompare``).

Targets (printed as met / missed, medians of the runs at 100 streams): the relay's CPU per chunk
≤ 1.5× nginx's; added TTFT p50 ≤ 1 ms and p99 ≤ 5 ms; added chunk lag p99 ≤ 2 ms; direct
first-token lag p50 ≤ 0.5 ms and p99 ≤ 2 ms; ≥ 500 streams per Locust process.
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

import numpy as np
import orjson
import psutil

from relaybench.run import calibrate
from relaybench.run.config import LoadConfig, ShapeParams, Target
from relaybench.run.nginx import Nginx
from relaybench.run.orchestrator import Orchestrator, RunPlan, environment
from relaybench.run.scrapecompare import (
    format_effect,
    format_pair,
    harness_cpu,
    pairs,
    scrape_effect,
    value_at,
)
from relaybench.run.servers import BenchServers, MockSettings

LEVELS = (10, 50, 100, 200)
HEALTHY_GATE = 100  # levels above it run only if every run at the level before was healthy
REPEAT = 3
CAPACITY_LEVELS = (250, 500, 1000)
CAPACITY_ITL_MS = 100.0  # 10 chunks/s per stream: concurrency, not the mock's chunk rate, is tested
CAPACITY_TOKENS = 30
# The first seconds are a warm-up: streams in flight ramp up from none over one request lifetime,
# and every connection (load generator to proxy, proxy to mock) is opened then. "steady" figures
# leave out requests sent in the first WARMUP_S seconds (about two request lifetimes).
WARMUP_S = 2.5
# The ideal upstream: 100 ms to the first token, then 49 gaps of 20 ms. Every request lasts
# STREAM_S, so closed-loop users would stay in lockstep and arrive in waves of all of them at
# once (the relay's added TTFT would measure a burst, with as many samples as waves); requests
# arrive instead on a constant open-loop schedule of ``streams / STREAM_S`` per second, which
# keeps ``streams`` in flight (Little's law) with one arrival every ``STREAM_S / streams``.
MOCK = MockSettings(
    ttft_ms=100, itl_ms=20, output_tokens=50, max_concurrency=0, slowdown_per_stream=0
)
STREAM_S = (MOCK.ttft_ms + (MOCK.output_tokens - 1) * MOCK.itl_ms) / 1000.0


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
        "added_first_token_lag_ms": {
            "p50": _diff(
                _get(d["first_token_lag_ms"], "p50"), _get(r["first_token_lag_ms"], "p50")
            ),
            "p50_ci": over.get("added_first_token_lag_ms_p50"),
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


def reference_row(summary: dict[str, Any], name: str = "nginx") -> dict[str, Any]:
    """The reference proxy's added TTFT and chunk lag versus direct (difference of quantiles)."""
    d, n = summary["targets"]["direct"], summary["targets"][name]
    return {
        f"added_{metric}": {
            q: _diff(_get(d[metric], q), _get(n[metric], q)) for q in ("p50", "p99")
        }
        for metric in ("ttft_ms", "chunk_lag_ms")
    }


def chunks_of(summary: dict[str, Any], name: str) -> int:
    """Content chunks the target's clients received (the chunk-lag sample count)."""
    lag = summary["targets"][name].get("chunk_lag_ms") or {}
    return int(lag.get("count") or 0)


def process_cpu_s(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return times.user + times.system


def per_chunk_us(cpu_s: float, chunks: int) -> float | None:
    return round(cpu_s / chunks * 1e6, 2) if chunks else None


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


def run_overhead(
    levels: Sequence[int],
    duration_s: float,
    work: Path,
    *,
    scrape_modes: Sequence[bool] = (False,),
    repeat: int = 1,
) -> list[dict[str, Any]]:
    """One row per run: ``repeat`` runs per level and scrape mode, each measuring direct, relay
    and nginx. The modes alternate run by run on the same servers, so scraping off and on are
    compared on one relay and one mock, not across restarts."""
    servers = BenchServers(MOCK)
    nginx: Nginx | None = None
    rows: list[dict[str, Any]] = []
    try:
        servers.start()
        assert servers.mock and servers.relay
        nginx = Nginx(servers.mock.url)
        nginx.start()
        targets = [
            Target("direct", servers.mock.url, stream=True, kind="mock", stamps=True),
            Target("relay", servers.relay.url, stream=True, kind="relay", stamps=True),
            Target("nginx", nginx.url, stream=True, kind="external", stamps=True),
        ]
        previous: list[dict[str, Any]] = []
        for level in levels:
            if level > HEALTHY_GATE and any(r["health"]["degraded"] for r in previous):
                print(f"   streams {level}: skipped (the load generator was degraded)", flush=True)
                break
            previous = []
            for rep in range(1, repeat + 1):
                # off then on, then on then off: a drift inside a pair alternates sides
                for scrape in scrape_modes if rep % 2 else tuple(reversed(scrape_modes)):
                    row = _one_run(servers, nginx, targets, level, rep, duration_s, work, scrape)
                    if row is None:
                        return rows
                    rows.append(row)
                    previous.append(row)
                    print("   " + format_overhead(row), flush=True)
    finally:
        if nginx is not None:
            nginx.stop()
        servers.stop()
    return rows


def _one_run(
    servers: BenchServers,
    nginx: Nginx,
    targets: list[Target],
    level: int,
    rep: int,
    duration_s: float,
    work: Path,
    scrape: bool,
) -> dict[str, Any] | None:
    assert servers.mock and servers.relay
    run_dir = work / f"overhead-{level}-{rep}{'-scraped' if scrape else ''}"
    load = LoadConfig(
        run_dir=str(run_dir),
        target=targets[0],
        # the in-flight cap is twice the level, so a slow target queues visibly, not silently
        shape=ShapeParams(
            "constant", users=2 * level, duration_s=duration_s, rate=level / STREAM_S
        ),
        api_key=servers.api_key,
        max_tokens=None,
    )
    plan = RunPlan(
        run_dir=run_dir,
        command=f"bench_relay overhead {level} run {rep}",
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
    relay_cpu, nginx_cpu = process_cpu_s(servers.relay.pid), nginx.cpu_seconds()
    orch = Orchestrator(plan)
    summary = orch.run()
    if orch.interrupted or summary is None:
        return None
    relay_cpu = process_cpu_s(servers.relay.pid) - relay_cpu
    nginx_cpu = nginx.cpu_seconds() - nginx_cpu
    row = overhead_row(level, summary)
    row["rep"] = rep
    row["steady"] = steady_row(level, run_dir)
    row["scrape"] = scrape
    row["harness_cpu"] = harness_cpu(run_dir)
    row["nginx"] = reference_row(summary)
    row["cpu_per_chunk_us"] = {
        "relay": per_chunk_us(relay_cpu, chunks_of(summary, "relay")),
        "nginx": per_chunk_us(nginx_cpu, chunks_of(summary, "nginx")),
    }
    return row


# (label, unit, path in a row for the relay, path for nginx)
COMPARED = (
    ("added TTFT p50", "ms", ("added_ttft_ms", "p50"), ("nginx", "added_ttft_ms", "p50")),
    ("added TTFT p99", "ms", ("added_ttft_ms", "p99"), ("nginx", "added_ttft_ms", "p99")),
    (
        "added chunk lag p50",
        "ms",
        ("added_chunk_lag_ms", "p50"),
        ("nginx", "added_chunk_lag_ms", "p50"),
    ),
    (
        "added chunk lag p99",
        "ms",
        ("added_chunk_lag_ms", "p99"),
        ("nginx", "added_chunk_lag_ms", "p99"),
    ),
    ("CPU per chunk", "µs", ("cpu_per_chunk_us", "relay"), ("cpu_per_chunk_us", "nginx")),
)


def spread(values: Sequence[float | None]) -> dict[str, float | int] | None:
    """Median and min–max of the runs' values (runs without a value are left out)."""
    kept = np.array([v for v in values if v is not None], dtype=float)
    if not kept.size:
        return None
    return {
        "median": round(float(np.median(kept)), 3),
        "min": round(float(kept.min()), 3),
        "max": round(float(kept.max()), 3),
        "runs": int(kept.size),
    }


def ratio(relay: dict[str, Any] | None, nginx: dict[str, Any] | None) -> float | None:
    """The relay's median over nginx's; None when nginx's is not above zero (no meaning)."""
    if not relay or not nginx or nginx["median"] <= 0:
        return None
    return round(relay["median"] / nginx["median"], 2)


def compare_levels(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per level: each compared figure's spread for the relay and nginx, and their ratio."""
    out = []
    for level in sorted({r["streams"] for r in rows}):
        runs = [r for r in rows if r["streams"] == level]
        figures = {}
        for label, unit, relay_path, nginx_path in COMPARED:
            relay = spread([value_at(r, relay_path) for r in runs])
            nginx = spread([value_at(r, nginx_path) for r in runs])
            figures[label] = {
                "unit": unit,
                "relay": relay,
                "nginx": nginx,
                "ratio": ratio(relay, nginx),
            }
        out.append({"streams": level, "runs": len(runs), "figures": figures})
    return out


def _s(block: dict[str, Any] | None) -> str:
    if not block:
        return "n/a"
    return f"{block['median']:.2f} [{block['min']:.2f}–{block['max']:.2f}]"


def format_compare(level: dict[str, Any]) -> list[str]:
    lines = [f"streams {level['streams']:3d} ({level['runs']} runs; median [min–max]):"]
    for label, figure in level["figures"].items():
        r = figure["ratio"]
        lines.append(
            f"  {label:<20} relay {_s(figure['relay'])} {figure['unit']} | "
            f"nginx {_s(figure['nginx'])} {figure['unit']} | "
            f"relay/nginx {'n/a' if r is None else f'{r:.2f}x'}"
        )
    return lines


def relay_targets(level: dict[str, Any]) -> list[tuple[str, str]]:
    """The issue's targets at one level, on the medians: (label, met / MISSED / n/a)."""
    f = level["figures"]

    def median(label: str, who: str = "relay") -> float | None:
        block = f[label][who]
        return None if block is None else block["median"]

    cpu = f["CPU per chunk"]["ratio"]
    return [
        ("relay CPU per chunk <= 1.5x nginx's", _verdict(cpu, 1.5)),
        ("added TTFT p50 <= 1 ms", _verdict(median("added TTFT p50"), 1.0)),
        ("added TTFT p99 <= 5 ms", _verdict(median("added TTFT p99"), 5.0)),
        ("added chunk lag p99 <= 2 ms", _verdict(median("added chunk lag p99"), 2.0)),
    ]


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def format_overhead(row: dict[str, Any]) -> str:
    t, c, lag = row["added_ttft_ms"], row["added_chunk_lag_ms"], row["direct_first_token_lag_ms"]
    run = f" run {row['rep']}" if "rep" in row else ""
    run += " (scraped)" if row.get("scrape") else ""
    return (
        f"streams {row['streams']:3d}{run}: relay added TTFT p50 {_f(t['p50'])} "
        f"p99 {_f(t['p99'])} ms | "
        f"added chunk lag p50 {_f(c['p50'])} p99 {_f(c['p99'])} ms | "
        f"direct first-token lag p50 {_f(lag['p50'])} p99 {_f(lag['p99'])} ms | "
        f"loadgen CPU max {row['loadgen_cpu_max_pct']:.0f}%"
        + _format_reference(row)
        + _format_steady(row.get("steady"))
    )


def _format_reference(row: dict[str, Any]) -> str:
    if "nginx" not in row:
        return ""
    n, cpu = row["nginx"], row["cpu_per_chunk_us"]
    return (
        f"\n{'':16}nginx added TTFT p50 {_f(n['added_ttft_ms']['p50'])} "
        f"p99 {_f(n['added_ttft_ms']['p99'])} ms | added chunk lag p50 "
        f"{_f(n['added_chunk_lag_ms']['p50'])} p99 {_f(n['added_chunk_lag_ms']['p99'])} ms | "
        f"CPU per chunk relay {_f(cpu['relay'])} µs, nginx {_f(cpu['nginx'])} µs"
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


def _verdict(value: float | None, limit: float, *, at_least: bool = False) -> str:
    if value is None:
        return "n/a"
    ok = value >= limit if at_least else value <= limit
    return "met" if ok else "MISSED"


def _median(values: Sequence[float | None]) -> float | None:
    block = spread(values)
    return None if block is None else block["median"]


def _levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give stream counts like 10,50,100") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: every level must be at least 1")
    return levels


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a whole number >= 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m relaybench.run.bench_relay")
    p.add_argument("--duration", type=float, default=8.0, help="seconds per target and level")
    p.add_argument("--capacity-duration", type=float, default=8.0)
    p.add_argument("--out", type=Path, help="JSON result (default runs/bench-relay-<ts>.json)")
    p.add_argument("--skip-capacity", action="store_true")
    p.add_argument(
        "--levels",
        type=_levels,
        default=LEVELS,
        help="streams in flight, comma-separated (default 10,50,100,200; above 100 only when "
        "the load generator stayed healthy)",
    )
    p.add_argument("--repeat", type=_positive, default=REPEAT, help="runs per level (median)")
    p.add_argument(
        "--scrape-compare",
        action="store_true",
        help="also make every run once more with the server view on, in turn on the same "
        "servers; print both ways and whether scraping moved them",
    )
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or Path("runs") / f"bench-relay-{stamp}.json"
    with tempfile.TemporaryDirectory(prefix="relaybench-bench-") as tmp:
        print(
            "== relay and nginx overhead versus direct (mock TTFT 100 ms, 20 ms x 50 chunks), "
            f"{args.repeat} run(s) per level",
            flush=True,
        )
        if args.scrape_compare:
            print("   each run twice in turn: server view off, then on (scraping every 1 s)")
        modes = (False, True) if args.scrape_compare else (False,)
        every = run_overhead(
            args.levels, args.duration, Path(tmp), scrape_modes=modes, repeat=args.repeat
        )
        rows = [row for row in every if not row["scrape"]]
        scraped = [row for row in every if row["scrape"]]
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
    effect = scrape_effect(rows, scraped) if scraped else []
    if scraped:
        print("  scraping off versus on (relay /metrics, relay and mock PIDs, mock stats):")
        for off, on in pairs(rows, scraped):
            print(f"    streams {off['streams']:3d} " + format_pair(off, on))
        for level in effect:
            for line in format_effect(level):
                print("    " + line)
    compared = compare_levels(rows)
    print("  the relay against nginx (same run, same mock):")
    for level in compared:
        for line in format_compare(level):
            print("    " + line)
    at100 = [r for r in rows if r["streams"] == 100]
    level100 = next((c for c in compared if c["streams"] == 100), None)
    if level100:
        print(f"  targets at 100 streams (medians of {level100['runs']} runs):")
        for label, verdict in relay_targets(level100):
            print(f"    {label}: {verdict}")
    for label, pick in (("all requests", lambda r: r), ("steady state", lambda r: r["steady"])):
        if not at100:
            break
        med = {
            path: _median([value_at(pick(r), path) for r in at100])
            for path in (
                ("added_ttft_ms", "p50"),
                ("added_ttft_ms", "p99"),
                ("direct_first_token_lag_ms", "p50"),
                ("direct_first_token_lag_ms", "p99"),
            )
        }
        print(f"  targets at 100 streams, {label} (medians):")
        print(f"    added TTFT p50 <= 1 ms: {_verdict(med[('added_ttft_ms', 'p50')], 1.0)}")
        print(f"    added TTFT p99 <= 5 ms: {_verdict(med[('added_ttft_ms', 'p99')], 5.0)}")
        lag50, lag99 = (
            med[("direct_first_token_lag_ms", "p50")],
            med[("direct_first_token_lag_ms", "p99")],
        )
        print(f"    direct first-token lag p50 <= 0.5 ms: {_verdict(lag50, 0.5)}")
        print(f"    direct first-token lag p99 <= 2 ms: {_verdict(lag99, 2.0)}")
    if cap:
        for row in cap_rows:
            print("  " + calibrate.format_row(row))
        print(
            f"  capacity: {cap['streams_per_process']} streams, "
            f"{cap['chunks_per_s_per_process']:.0f} chunks/s per Locust process "
            f"({calibrate.precision_text(cap)}); "
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
        "versus_nginx": compared,
        "overhead_scraped": scraped,
        "scrape_effect": effect,
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
