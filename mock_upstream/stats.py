"""Counters and emission lateness for ``GET /mock/stats`` (reset by ``POST /mock/reset``).

Lateness (actual write time minus scheduled deadline, monotonic clock) goes into a fixed
histogram: 10 µs bins from -5 ms to +100 ms, 1 ms bins from 100 ms to 10 s, an underflow and an
overflow bin, with the exact min/max kept aside: O(1) per chunk, bounded memory however long the
run. Quantiles are reported as the upper edge of their bin (clamped to the observed range).
"""

from __future__ import annotations

import time
from collections import Counter

_FINE_S = 10e-6
_LOW_S = -5e-3
_FINE_TOP_S = 0.1
_FINE = 10_500  # bins in [-5 ms, 100 ms)
_COARSE_S = 1e-3
_LAST = _FINE + 9_900 + 1  # index of the overflow bin (>= 10 s)


class Lateness:
    __slots__ = ("bins", "count", "max", "min")

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Start over in place: open streams keep a reference to this object."""
        self.bins = [0] * (_LAST + 1)
        self.count = 0
        self.max = float("-inf")
        self.min = float("inf")

    def add(self, late_s: float) -> None:
        if late_s < _FINE_TOP_S:
            i = int((late_s - _LOW_S) / _FINE_S) + 1
            if i < 1:
                i = 0
        else:
            i = _FINE + 1 + int((late_s - _FINE_TOP_S) / _COARSE_S)
            if i > _LAST:
                i = _LAST
        self.bins[i] += 1
        self.count += 1
        if late_s > self.max:
            self.max = late_s
        if late_s < self.min:
            self.min = late_s

    def raw(self) -> dict[str, object]:
        """The histogram as JSON-able data (non-empty bins only), for ``merge`` elsewhere."""
        raw: dict[str, object] = {"bins": [[i, n] for i, n in enumerate(self.bins) if n]}
        if self.count:
            raw.update(count=self.count, min=self.min, max=self.max)
        return raw

    def merge(self, raw: dict[str, object]) -> None:
        """Add another histogram's ``raw()`` (another worker's) to this one."""
        for i, n in raw["bins"]:  # type: ignore[attr-defined]
            self.bins[i] += n
        if raw.get("count"):
            self.count += raw["count"]  # type: ignore[operator]
            self.min = min(self.min, raw["min"])  # type: ignore[type-var]
            self.max = max(self.max, raw["max"])  # type: ignore[type-var]

    def quantile(self, q: float) -> float:
        target = q * self.count
        seen = 0
        for i, n in enumerate(self.bins):
            seen += n
            if n and seen >= target:
                if i <= _FINE:
                    upper = _LOW_S + i * _FINE_S
                else:
                    upper = _FINE_TOP_S + (i - _FINE) * _COARSE_S
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
    """Everything ``/mock/stats`` reports. ``active_streams`` is live and survives a reset.

    Every completion request ends in exactly one of ``completed``, ``cancelled``, ``rejected``,
    ``bad_requests`` or ``faulted``, so once nothing is in flight their sum equals ``requests``.
    (A stalled stream ends as ``cancelled`` when its client gives up; a malformed line does
    not end a stream.)
    """

    def __init__(self) -> None:
        self.active_streams = 0
        self.lateness = Lateness()
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.completed = 0
        self.cancelled = 0
        self.rejected = 0
        self.bad_requests = 0
        self.faulted = 0  # ended by an injected fault: a status answer or a cut connection
        self.chunks = 0
        self.direct_writes = 0  # body writes straight to the socket (the rest went through send)
        self.faults: Counter[str] = Counter()
        self.lateness.clear()
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
            "faulted": self.faulted,
            "faults": sum(self.faults.values()),
            "faults_by_kind": dict(self.faults),
            "chunks": self.chunks,
            "direct_writes": self.direct_writes,
            "lateness_ms": self.lateness.summary_ms(),
            "since_reset_s": round(time.monotonic() - self.reset_at, 3),
        }
