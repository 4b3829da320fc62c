"""A process's CPU, memory, open files and threads by PID (psutil), once per interval.

``cpu_pct`` is user+system CPU time over the wall time since the previous sample (100 = one
core); ``cpu_s`` the process's total CPU seconds so far, so any window's CPU cost is a
difference of two samples. A process that is gone (or became another one: psutil checks the
creation time behind a PID) raises ``ProcessGone``; it is never sampled again.
"""

from __future__ import annotations

import time

import psutil


class ProcessGone(Exception):
    """The PID no longer names the process we started sampling."""


class ProcessProbe:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        try:
            self._proc = psutil.Process(pid)
            self._last = (time.monotonic(), self._cpu_s())
        except psutil.NoSuchProcess:
            raise ProcessGone(f"no process with PID {pid}") from None
        except psutil.AccessDenied:
            raise ProcessGone(f"PID {pid}: not allowed to read this process") from None

    def _cpu_s(self) -> float:
        t = self._proc.cpu_times()
        return t.user + t.system

    def sample(self) -> dict[str, dict]:
        try:
            with self._proc.oneshot():
                if not self._proc.is_running() or self._proc.status() == psutil.STATUS_ZOMBIE:
                    raise ProcessGone(f"process {self.pid} exited")
                now, cpu = time.monotonic(), self._cpu_s()
                memory = self._proc.memory_info()
                fds = self._proc.num_fds() if hasattr(self._proc, "num_fds") else None
                threads = self._proc.num_threads()
        except psutil.NoSuchProcess:
            raise ProcessGone(f"process {self.pid} exited") from None
        except psutil.AccessDenied:
            raise ProcessGone(f"PID {self.pid}: not allowed to read this process") from None
        wall = now - self._last[0]
        pct = 100.0 * (cpu - self._last[1]) / wall if wall > 0 else 0.0
        self._last = (now, cpu)
        gauges = {
            "cpu_pct": round(pct, 2),
            "cpu_s": round(cpu, 4),
            "rss_mb": round(memory.rss / 2**20, 2),
            "threads": float(threads),
        }
        if fds is not None:
            gauges["fds"] = float(fds)
        return {"gauges": gauges, "rates": {}, "quantiles": {}}
