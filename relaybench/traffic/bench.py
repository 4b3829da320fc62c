"""``make bench-trace``: replay 10 minutes of the shipped trace at 10x against the mock.

Prints how long parsing the whole shipped trace and building its schedule takes (target: 1 s),
then runs ``relaybench run --scenario trace --trace-window 600 --speedup 10`` against a mock
that answers exactly ``max_tokens`` with no concurrency limit (the harness is under test, not
the mock) and prints, from the run's records: arrivals asked (the schedule) versus achieved
(sent), also per 10 s; the schedule lag (actual send - intended send) p50/p99/max; and the load
generator's CPU. Targets: achieved within 1% of asked, lag p99 <= 5 ms — printed as met/missed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import orjson

from relaybench.procs import ServerProcess
from relaybench.traffic import trace

ACHIEVED_TARGET = 0.01
LAG_P99_TARGET_MS = 5.0


def _parse_timing() -> tuple[float, int]:
    started = time.perf_counter()
    sched = trace.build_schedule(trace.load(trace.default_path()))
    return time.perf_counter() - started, len(sched)


def _lines(paths: Sequence[Path]) -> list[dict]:
    return [orjson.loads(line) for p in paths for line in p.read_bytes().splitlines() if line]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m relaybench.traffic.bench")
    p.add_argument("--window", type=float, default=600.0, help="trace seconds to replay")
    p.add_argument("--speedup", type=float, default=10.0)
    p.add_argument("--users", type=int, default=500, help="in-flight cap")
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--ttft-ms", type=float, default=100.0, help="the mock's time to first token")
    p.add_argument("--itl-ms", type=float, default=10.0, help="the mock's time between tokens")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))

    seconds, rows = _parse_timing()
    verdict = "met" if seconds <= 1.0 else "MISSED"
    print(
        f"parse + schedule of the whole shipped trace ({rows} rows): {seconds * 1000:.0f} ms "
        f"(target <= 1000 ms: {verdict})",
        flush=True,
    )

    from relaybench.run import cli
    from relaybench.run.orchestrator import Orchestrator

    argv = ["-m", "mock_upstream", "--host", "127.0.0.1", "--port", "0"]
    argv += ["--output-from-max-tokens", "--max-concurrency", "0"]
    argv += ["--ttft-ms", f"{args.ttft_ms:g}", "--itl-ms", f"{args.itl_ms:g}"]
    mock = ServerProcess("mock_upstream", argv)
    mock.start()
    try:
        with tempfile.TemporaryDirectory(prefix="relaybench-trace-") as tmp:
            run_dir = Path(tmp) / "run"
            plan = cli.parse(
                [
                    "--target",
                    f"direct={mock.url}",
                    "--scenario",
                    "trace",
                    "--trace-window",
                    f"{args.window:g}",
                    "--speedup",
                    f"{args.speedup:g}",
                    "--users",
                    str(args.users),
                    "--processes",
                    str(args.processes),
                    "--seed",
                    str(args.seed),
                    "--out",
                    str(run_dir),
                ]
            )
            plan.full_report = False
            orch = Orchestrator(plan)
            if orch.run() is None or orch.interrupted:
                return 130
            recs = _lines(sorted((run_dir / "records").glob("direct.*.jsonl")))
            cpu = _lines(sorted((run_dir / "loadgen").glob("direct.w*.jsonl")))
            duration = plan.load.shape.duration_s
    finally:
        mock.stop()

    sched = plan.load.traffic.schedule(args.seed)
    asked = sched.offset_s[sched.offset_s < duration]
    intended = np.array([r["intended_ns"] for r in recs], dtype=np.int64)
    sent = np.array([r["start_ns"] for r in recs], dtype=np.int64)
    t0 = intended.min() - round(asked.min() * 1e9)
    lag_ms = (sent - intended) / 1e6
    gap = abs(len(recs) - len(asked)) / len(asked)
    print(
        f"\narrivals asked {len(asked)}, achieved {len(recs)} ({gap:.2%} apart; target <= "
        f"{ACHIEVED_TARGET:.0%}: {'met' if gap <= ACHIEVED_TARGET else 'MISSED'})"
    )
    edges = np.arange(0.0, duration + 10.0, 10.0)
    asked_bins, _ = np.histogram(asked, bins=edges)
    sent_bins, _ = np.histogram((sent - t0) / 1e9, bins=edges)
    pairs = zip(asked_bins, sent_bins, strict=True)
    print(
        "  per 10 s (asked/achieved req/s): "
        + "  ".join(f"{a / 10:.1f}/{s / 10:.1f}" for a, s in pairs)
    )
    p50, p99, worst = np.percentile(lag_ms, 50), np.percentile(lag_ms, 99), lag_ms.max()
    met = "met" if p99 <= LAG_P99_TARGET_MS else "MISSED"
    print(
        f"schedule lag ms: p50 {p50:.2f}  p99 {p99:.2f}  max {worst:.2f} "
        f"(target p99 <= {LAG_P99_TARGET_MS:g} ms: {met})"
    )
    errors = Counter(r["error"] for r in recs if not r["ok"])
    print(f"failed requests: {sum(errors.values())} {dict(errors) or ''}".rstrip())
    for worker in sorted({c["worker"] for c in cpu}):
        pct = [c["cpu_pct"] for c in cpu if c["worker"] == worker and c["users"]]
        if pct:
            print(
                f"load generator {worker} CPU: mean {np.mean(pct):.0f}%  max {max(pct):.0f}% "
                "(100% = one core)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
