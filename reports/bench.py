"""``make bench-report``: build a full report from 1,000,000 synthetic records; print the figures.

The records are written to a temporary run folder first (not timed). The report build then runs
in a fresh child process, so its peak memory (the child's max RSS, from ``getrusage``) counts
only the build: loading, summary.json, the charts, report.md and report.html.
Targets: ≤ 20 s and ≤ 2 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from relaybench.procs import die_with_parent, owned_child
from reports.synthetic import SyntheticRun, write_run

TARGET_S = 20.0
TARGET_MIB = 2048


def generate(run_dir: Path, records: int) -> int:
    per_target = -(-records // 3)
    spec = SyntheticRun(
        scenario="step",
        steps=tuple((users, 600.0) for users in (50, 100, 150, 200, 250)),
        knee_users=150,
        ms_per_user_over_knee=4.0,
        error_rate=0.01,
        seed=7,
        workers=4,
    )
    counts = write_run(run_dir, spec, max_requests=per_target)
    return sum(counts.values())


def build(run_dir: Path) -> dict:
    from reports.pipeline import rebuild

    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    started = time.perf_counter()
    rebuild(run_dir)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"build_s": round(seconds, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime - cpu, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports.bench")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--build", type=Path, help=argparse.SUPPRESS)  # the child's job
    args = parser.parse_args(argv)
    if args.build:
        die_with_parent()  # a bench killed outright (a CI timeout) leaves no build running
        print(json.dumps(build(args.build)))
        return 0
    with tempfile.TemporaryDirectory(prefix="relaybench-bench-report-") as tmp:
        run_dir = Path(tmp) / "run"
        t0 = time.perf_counter()
        n = generate(run_dir, args.records)
        size = sum(p.stat().st_size for p in (run_dir / "records").glob("*.jsonl"))
        print(
            f"generated {n:,} records ({size / 2**20:,.0f} MiB of JSONL) in "
            f"{time.perf_counter() - t0:.1f} s (not timed)",
            flush=True,
        )
        t1 = time.perf_counter()
        child = subprocess.run(
            [sys.executable, "-m", "reports.bench", "--build", str(run_dir)],
            capture_output=True,
            text=True,
            check=False,
            **owned_child(),
        )
        wall = time.perf_counter() - t1
        if child.returncode != 0:
            print(child.stderr, file=sys.stderr)
            return 1
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        outputs = [p.name for p in sorted(run_dir.iterdir()) if p.is_file()]
        ok = figures["build_s"] <= TARGET_S and peak_mib <= TARGET_MIB
        print(f"report build: {figures['build_s']:.2f} s (target <= {TARGET_S:.0f} s), "
              f"{figures['cpu_s']:.2f} s of CPU; child process incl. interpreter start and "
              f"imports {wall:.2f} s")  # fmt: skip
        print(f"load average (1 min) during the build: {os.getloadavg()[0]:.2f} on "
              f"{os.cpu_count()} CPUs")  # fmt: skip
        print(f"peak memory (child max RSS): {peak_mib:,.0f} MiB (target <= {TARGET_MIB} MiB)")
        print(f"wrote: {', '.join(outputs)}")
        print("PASS" if ok else "MISS: over target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
