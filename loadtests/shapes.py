"""Load scenarios as pure functions of elapsed time.

A scenario answers one question: at ``t`` seconds into a target's run, how many users should be
active (closed loop), or at what rate should requests arrive (open loop), and which step is this?
``stage_at(params, t)`` is that function; it returns ``None`` once the run is over. Locust's
``LoadTestShape`` only adapts it (``loadtests.worker``), so every scenario is unit-tested without
Locust, and the load generator can stamp each record with the step it was sent in.

- ``steady``  — ``users`` for the whole run.
- ``step``    — ``steps`` equal steps up to ``users`` (or up to ``rate`` when a rate is given):
  the latency-versus-load curve; each record carries its step index.
- ``peak``    — the evening peak, time-compressed: a baseline of ``users / peak_multiple``,
  a ramp to ``users``, a hold, a ramp down, and the baseline again.
- ``spike``   — the baseline, then ``users`` all at once for a fifth of the run, then the baseline.
- ``soak``    — a short ramp, then ``users`` held; meant for long durations (leaks, drift).
- ``chat``    — chat sessions in flight, each a closed loop of turns with think time
  (``relaybench.traffic.sessions``); how many follows ``chat_shape`` (``steady``, ``peak``, …).
- ``retry-storm`` — the ``peak`` shape; the run command sizes the mock so the peak overloads it.
- ``trace``   — open loop on a trace file's arrivals (``relaybench.traffic.trace``).
- ``constant`` / ``poisson`` — open loop: requests arrive at ``rate`` per second on a seeded
  schedule of absolute times (``loadtests.schedule``), whatever the latency; ``users`` caps how
  many can be in flight at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from relaybench.run.config import OPEN_LOOP, ShapeParams

# The evening peak, as fractions of the run: baseline, ramp up, hold, ramp down, baseline.
PEAK_PHASES = (0.25, 0.15, 0.35, 0.15, 0.10)


@dataclass(frozen=True)
class Stage:
    """What the load should be at one moment."""

    users: int  # active users (closed loop) or the in-flight cap (open loop)
    step: int | None = None  # step index, ``step`` scenarios only
    rate: float | None = None  # asked arrival rate, open loop only


def stage_at(p: ShapeParams, t: float) -> Stage | None:
    """The load at ``t`` seconds into the run, or None when the run is over."""
    if t < 0 or t >= p.duration_s:
        return None
    frac = t / p.duration_s
    if p.scenario == "chat":  # sessions in flight follow a closed-loop shape
        p = replace(p, scenario=p.chat_shape)
    if p.scenario == "steady":
        return Stage(p.users)
    if p.scenario == "step":
        k = min(int(frac * p.steps), p.steps - 1)
        if p.rate is not None:
            return Stage(p.users, step=k, rate=p.rate * (k + 1) / p.steps)
        return Stage(max(1, math.ceil(p.users * (k + 1) / p.steps)), step=k)
    if p.scenario in ("peak", "retry-storm"):
        return Stage(_peak_users(p, frac))
    if p.scenario == "spike":
        return Stage(p.users if 0.4 <= frac < 0.6 else p.baseline)
    if p.scenario == "soak":
        return Stage(max(1, math.ceil(p.users * min(1.0, frac / 0.05))))
    if p.scenario in OPEN_LOOP:
        return Stage(p.users, rate=p.rate)
    raise ValueError(f"unknown scenario {p.scenario!r}")


def _peak_users(p: ShapeParams, frac: float) -> int:
    base, top = p.baseline, p.users
    b1, up, hold, down, _ = PEAK_PHASES
    if frac < b1:
        return base
    if frac < b1 + up:
        return round(base + (top - base) * (frac - b1) / up)
    if frac < b1 + up + hold:
        return top
    if frac < b1 + up + hold + down:
        return round(top - (top - base) * (frac - b1 - up - hold) / down)
    return base


def rate_segments(p: ShapeParams) -> list[tuple[float, float, float]]:
    """Open loop: the asked rate as ``(start_s, end_s, rate)`` pieces covering the run."""
    if not p.open_loop or p.rate is None:
        return []
    if p.scenario == "step":
        width = p.duration_s / p.steps
        return [(k * width, (k + 1) * width, p.rate * (k + 1) / p.steps) for k in range(p.steps)]
    return [(0.0, p.duration_s, p.rate)]
