"""Where a load-generator process puts what it measured: records and its own CPU samples.

Both are JSON lines appended to the run folder while the run goes (``docs/run-folder.md``):
records are buffered and written every ``FLUSH_INTERVAL_S`` or every ``FLUSH_RECORDS`` records,
whichever comes first, so a Ctrl-C or a crash loses at most half a second of measurements.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import IO, Any

import orjson
import psutil

FLUSH_INTERVAL_S = 0.5
FLUSH_RECORDS = 100
SAMPLE_INTERVAL_S = 1.0


def worker_id(pid: int) -> str:
    """A load generator's name in its file names and records: ``w<PID>``."""
    return f"w{pid}"


class RecordWriter:
    """Appends records to ``records/<target>.<worker>.jsonl``."""

    def __init__(self, run_dir: Path, target: str, worker: str) -> None:
        path = run_dir / "records" / f"{target}.{worker}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[bytes] = path.open("ab")
        self._pending: list[bytes] = []
        self._last_flush = time.monotonic()
        self.count = 0

    def write(self, record: dict[str, Any]) -> None:
        self._pending.append(orjson.dumps(record) + b"\n")
        self.count += 1
        if len(self._pending) >= FLUSH_RECORDS:
            self.flush()

    def flush_if_due(self) -> None:
        if self._pending and time.monotonic() - self._last_flush >= FLUSH_INTERVAL_S:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._file.write(b"".join(self._pending))
            self._pending.clear()
        self._file.flush()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()


class CpuSampler:
    """Samples this process's CPU (100 = one core) and memory to ``loadgen/*.jsonl``.

    CPU is the process's user+system time over the wall time since the previous sample; a
    sample less than half an interval after the previous one is skipped (too short to mean
    anything: psutil-style percentages over milliseconds jump to absurd values).
    """

    def __init__(self, run_dir: Path, target: str, worker: str) -> None:
        path = run_dir / "loadgen" / f"{target}.{worker}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.worker = worker
        self._file: IO[bytes] = path.open("ab")
        self._proc = psutil.Process()
        self._last = (time.monotonic(), self._cpu_s())
        self.max_pct = 0.0

    def _cpu_s(self) -> float:
        t = self._proc.cpu_times()
        return t.user + t.system

    def sample(self, users: int) -> dict[str, Any] | None:
        now, cpu = time.monotonic(), self._cpu_s()
        wall = now - self._last[0]
        if wall < SAMPLE_INTERVAL_S / 2:
            return None
        pct = 100.0 * (cpu - self._last[1]) / wall
        self._last = (now, cpu)
        self.max_pct = max(self.max_pct, pct)
        row = {
            "t_ns": time.time_ns(),
            "worker": self.worker,
            "cpu_pct": round(pct, 1),
            "rss_mb": round(self._proc.memory_info().rss / 2**20, 1),
            "users": users,
        }
        self._file.write(orjson.dumps(row) + b"\n")
        self._file.flush()
        return row

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
