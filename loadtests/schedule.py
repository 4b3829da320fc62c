"""Open-loop arrival schedules: seeded, absolute intended start times.

Each request gets an intended start time computed up front, never by summing sleeps at run
time: ``start + i / rate`` for ``constant`` arrivals, cumulative seeded exponential gaps for
``poisson``. A request that goes out late (every user busy, or the load generator slow) keeps its
intended time, so latency can be measured from when the user *wanted* to send (response time)
as well as from the actual send (service time): the coordinated-omission correction. The gap
between the two is the schedule lag, recorded per request.

With several load-generator processes, process ``n`` of ``N`` takes arrivals ``n, n+N, …`` of
the one schedule, so the merged load is exactly the schedule a single process would have run.
"""

from __future__ import annotations

import random
from collections.abc import Sequence


def arrival_offsets(
    segments: Sequence[tuple[float, float, float]], *, poisson: bool, seed: int
) -> list[float]:
    """Intended start offsets (seconds from the run's start) for piecewise-constant rates.

    ``segments`` are ``(start_s, end_s, rate)``; each contributes arrivals in ``[start, end)``.
    """
    rng = random.Random(seed)
    out: list[float] = []
    for start, end, rate in segments:
        if rate <= 0:
            continue
        if poisson:
            t = start + rng.expovariate(rate)
            while t < end:
                out.append(t)
                t += rng.expovariate(rate)
        else:
            i = 0
            while (t := start + i / rate) < end:
                out.append(t)
                i += 1
    return out


def share(offsets: Sequence[float], index: int, count: int) -> list[float]:
    """The arrivals process ``index`` of ``count`` sends: every ``count``-th, from ``index``."""
    return list(offsets[index::count])


def rate_at(segments: Sequence[tuple[float, float, float]], t: float) -> float | None:
    """The asked rate at offset ``t``."""
    for start, end, rate in segments:
        if start <= t < end:
            return rate
    return None


def intended_ns(t0_ns: int, offset_s: float) -> int:
    return t0_ns + round(offset_s * 1e9)
