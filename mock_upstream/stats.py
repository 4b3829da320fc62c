"""Counters and emission lateness for ``GET /mock/stats`` (reset by ``POST /mock/reset``).

Lateness (actual write time minus scheduled deadline, monotonic clock) goes into a fixed
histogram of 10 µs bins from -5 ms to +100 ms, with overflow bins at both ends and the exact
min/max kept aside: O(1) per chunk, bounded memory however long the run.
"""

from __future__ import annotations

import time
from collections import Counter

_BIN_S = 10e-6
_LOW_S = -5e-3
_NBINS = 10_500 + 2  # [-5 ms, +100 ms) in 10 µs bins, plus an underflow and an overflow bin


class Lateness:
    __slots__ = ("bins", "count", "max", "min")

    def __init__(self) -> None:
        self.bins = [0] * _NBINS
        self.count = 0
        self.max = float("-inf")
        self.min = float("inf")

    def add(self, late_s: float) -> None:
        i = int((late_s - _LOW_S) / _BIN_S) + 1
        self.bins[0 if i < 1 else (i if i < _NBINS - 1 else _NBINS - 1)] += 1
        self.count += 1
        if late_s > self.max:
            self.max = late_s
        if late_s < self.min:
            self.min = late_s

    def quantile(self, q: float) -> float:
        """Upper edge of the bin holding the q-quantile, clamped to the observed range (s)."""
        target = q * self.count
        seen = 0
        for i, n in enumerate(self.bins):
            seen += n
            if n and seen >= target:
                upper = _LOW_S + i * _BIN_S
                return min(max(upper, self.min), self.max)
        return self.max

    def summary_ms(self) -> dict[str, float | int | None]:
        if not self.count:
            return {"p50": None, "p99": None, "max": None, "min": None, "count": 0}
        return {
            "p50": round(self.quantile(0.50) * 1e3, 3),
            "p99": round(self.quantile(0.99) * 1e3, 3),
            "max": round(self.max * 1e3, 3),
            "min": round(self.min * 1e3, 3),
            "count": self.count,
        }


class Stats:
    """Everything ``/mock/stats`` reports. ``active_streams`` is live and survives a reset."""

    def __init__(self) -> None:
        self.active_streams = 0
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.completed = 0
        self.cancelled = 0
        self.rejected = 0
        self.bad_requests = 0
        self.chunks = 0
        self.faults: Counter[str] = Counter()
        self.lateness = Lateness()
        self.reset_at = time.monotonic()

    def snapshot(self, *, queued: int, active_requests: int) -> dict[str, object]:
        return {
            "requests": self.requests,
            "active_streams": self.active_streams,
            "active_requests": active_requests,
            "queued": queued,
            "completed": self.completed,
            "cancelled": self.cancelled,
            "rejected": self.rejected,
            "bad_requests": self.bad_requests,
            "faults": sum(self.faults.values()),
            "faults_by_kind": dict(self.faults),
            "chunks": self.chunks,
            "lateness_ms": self.lateness.summary_ms(),
            "since_reset_s": round(time.monotonic() - self.reset_at, 3),
        }
