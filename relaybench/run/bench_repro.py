"""``make bench-repro``: run the same short benchmark twice; how far apart are the results?

Both runs start their own mock and relay and measure the default targets on the same seeded
schedule (``relaybench run --scenario peak --users 20 --duration 10``). Printed per target:
TTFT p50 and p95 of each run and their relative difference; the target is p50 within 5%.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from relaybench.run import cli
from relaybench.run.orchestrator import Orchestrator

P50_TARGET = 0.05


def one_run(run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    argv = ["--scenario", args.scenario, "--users", str(args.users)]
    argv += ["--duration", str(args.duration), "--seed", str(args.seed), "--out", str(run_dir)]
    plan = cli.parse(argv)
    plan.full_report = False
    orch = Orchestrator(plan)
    summary = orch.run()
    if summary is None or orch.interrupted:
        raise SystemExit(130)
    return summary


def _rel(a: float, b: float) -> float:
    return abs(b - a) / a if a else float("inf")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m relaybench.run.bench_repro")
    p.add_argument("--scenario", default="peak")
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    with tempfile.TemporaryDirectory(prefix="relaybench-repro-") as tmp:
        runs = []
        for i in (1, 2):
            print(f"== run {i} of 2", flush=True)
            runs.append(one_run(Path(tmp) / f"run{i}", args))
    a, b = runs
    print("\ntarget          | TTFT p50 run1 / run2 (diff)  | TTFT p95 run1 / run2 (diff)")
    worst = 0.0
    for name in a["targets"]:
        ta, tb = a["targets"][name]["ttft_ms"], b["targets"][name]["ttft_ms"]
        d50, d95 = _rel(ta["p50"], tb["p50"]), _rel(ta["p95"], tb["p95"])
        worst = max(worst, d50)
        print(
            f"{name:15s} | {ta['p50']:8.1f} / {tb['p50']:8.1f} ({d50:6.2%}) "
            f"| {ta['p95']:8.1f} / {tb['p95']:8.1f} ({d95:6.2%})"
        )
    verdict = "met" if worst <= P50_TARGET else "MISSED"
    print(f"largest TTFT p50 difference {worst:.2%}; target <= {P50_TARGET:.0%}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
