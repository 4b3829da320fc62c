"""A server's CPU, memory, open files and threads by PID (psutil), once per interval.

A server may be several processes (the relay's ``--workers N`` forks N workers under one
parent), so a sample covers the PID and its live descendants, summed; CPU time of children
that already exited and were reaped still counts (``children_user``/``children_system``).
``cpu_pct`` is user+system CPU time over the wall time since the previous sample (100 = one
core); ``cpu_s`` the total CPU seconds so far, so any window's CPU cost is a difference of two
samples; ``processes`` how many were summed. Listing descendants reads every process of the
machine (milliseconds), so the list is refreshed every ``CHILDREN_EVERY`` samples only; CPU a
newcomer spent before it was seen is not counted. A PID that is gone (or became another
process: psutil checks the creation time behind it) raises ``ProcessGone``; it is never sampled
again.
"""

from __future__ import annotations

import time

import psutil

CHILDREN_EVERY = 10


class ProcessGone(Exception):
    """The PID no longer names the process we started sampling."""


class ProcessProbe:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._samples = 1
        self._offset = 0.0  # CPU that descendants had spent before we first saw them
        try:
            self._proc = psutil.Process(pid)
            self._children = self._proc.children(recursive=True)
            self._last = (time.monotonic(), self._cpu_s())
        except psutil.NoSuchProcess:
            raise ProcessGone(f"no process with PID {pid}") from None
        except psutil.AccessDenied:
            raise ProcessGone(f"PID {pid}: not allowed to read this process") from None

    def _cpu_s(self) -> float:
        return self._cpu_raw() - self._offset

    def _refresh_children(self) -> None:
        """A new descendant arrives with the CPU it spent unwatched: not this interval's."""
        before = self._cpu_raw()
        self._children = self._proc.children(recursive=True)
        self._offset += max(0.0, self._cpu_raw() - before)

    def _cpu_raw(self) -> float:
        t = self._proc.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in self._children:
            try:
                c = child.cpu_times()
            except psutil.Error:
                continue  # gone between the listing and the read
            total += c.user + c.system
        return total

    def _tree(self) -> tuple[int, float, float | None, int]:
        """(processes, RSS bytes, open fds or None where unsupported, threads) of the tree."""
        count, rss, fds, threads = 0, 0.0, 0.0, 0
        for proc in [self._proc, *self._children]:
            try:
                with proc.oneshot():
                    rss += proc.memory_info().rss
                    threads += proc.num_threads()
                    fds = fds + proc.num_fds() if hasattr(proc, "num_fds") else None
            except psutil.NoSuchProcess:
                if proc is self._proc:
                    raise
                continue
            count += 1
        return count, rss, fds, threads

    def sample(self) -> dict[str, dict]:
        try:
            if not self._proc.is_running() or self._proc.status() == psutil.STATUS_ZOMBIE:
                raise ProcessGone(f"process {self.pid} exited")
            if self._samples % CHILDREN_EVERY == 0:
                self._refresh_children()
            self._samples += 1
            now, cpu = time.monotonic(), self._cpu_s()
            count, rss, fds, threads = self._tree()
        except psutil.NoSuchProcess:
            raise ProcessGone(f"process {self.pid} exited") from None
        except psutil.AccessDenied:
            raise ProcessGone(f"PID {self.pid}: not allowed to read this process") from None
        wall = now - self._last[0]
        # a child that exited unreaped takes its CPU time with it: never report negative use
        pct = max(0.0, 100.0 * (cpu - self._last[1]) / wall) if wall > 0 else 0.0
        self._last = (now, max(cpu, self._last[1]))
        gauges = {
            "cpu_pct": round(pct, 2),
            "cpu_s": round(self._last[1], 4),
            "rss_mb": round(rss / 2**20, 2),
            "threads": float(threads),
            "processes": float(count),
        }
        if fds is not None:
            gauges["fds"] = float(fds)
        return {"gauges": gauges, "rates": {}, "quantiles": {}}
