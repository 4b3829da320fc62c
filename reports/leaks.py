"""Leak watch: does a server's RSS or open-fd count grow steadily while the load is held?

One sample proves nothing (an allocator grows in steps, a pool fills once), so a series is
judged by its trend: the Theil-Sen slope (``scipy.stats.theilslopes``, robust to the odd
outlier) with its 95% confidence interval. A series is flagged when all of these hold:

- it has at least ``min_points`` samples over at least ``min_span_s`` seconds, after leaving out
  the first ``warmup_share`` of the window (start-up, pools filling, a soak's ramp);
- the interval's lower end is above zero: it grows, beyond noise;
- the growth the slope implies over the judged span is material: at least a floor in the series'
  unit (``SERIES``: 4 MiB of RSS, 8 descriptors) *and* ``min_growth_share`` of its median level;
- it is still growing in the later half (that half's slope is at least half the whole one), so a
  series that rose once and then levelled off is not called a leak.

Only windows whose scenario holds its load (``steady``, ``soak``, ``constant``, ``poisson``) are
judged; a peak or a step run's memory follows its load, not a leak.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

HELD_LOAD_SCENARIOS = ("steady", "soak", "constant", "poisson")
MAX_POINTS = 600


@dataclass(frozen=True)
class LeakLimits:
    min_points: int = 20
    min_span_s: float = 30.0
    warmup_share: float = 0.2
    min_growth_share: float = 0.02
    confidence: float = 0.95


# per series: (gauge key, unit, smallest growth worth a flag in that unit)
SERIES = {"rss_mb": ("MiB", 4.0), "fds": ("fds", 8.0)}


def trend(
    t_s: np.ndarray, values: np.ndarray, limits: LeakLimits | None = None, min_growth: float = 4.0
) -> dict[str, Any] | None:
    """The verdict on one series (seconds, values), or None when it is too short to judge."""
    limits = limits or LeakLimits()
    keep = np.isfinite(t_s) & np.isfinite(values)
    t_s, values = t_s[keep], values[keep]
    if t_s.size < 2:
        return None
    cut = t_s[0] + limits.warmup_share * (t_s[-1] - t_s[0])
    t_s, values = t_s[t_s >= cut], values[t_s >= cut]
    span = float(t_s[-1] - t_s[0]) if t_s.size else 0.0
    if t_s.size < limits.min_points or span < limits.min_span_s:
        return None
    if t_s.size > MAX_POINTS:  # Theil-Sen is quadratic: medians of equal time bins instead
        bins = np.minimum(((t_s - t_s[0]) / span * MAX_POINTS).astype(int), MAX_POINTS - 1)
        t_s = np.array([np.median(t_s[bins == b]) for b in np.unique(bins)])
        values = np.array([np.median(values[bins == b]) for b in np.unique(bins)])
    half = t_s >= t_s[0] + span / 2
    with np.errstate(invalid="ignore"):  # many ties make the interval's variance negative
        if np.ptp(values) == 0:  # not a single change: no trend, and no interval to compute
            slope = low = high = 0.0
            intercept = float(values[0])
        else:
            slope, intercept, low, high = stats.theilslopes(values, t_s, alpha=limits.confidence)
            if not (np.isfinite(low) and np.isfinite(high)):  # no usable interval
                low = high = slope
        later = stats.theilslopes(values[half], t_s[half])[0] if half.sum() >= 3 else 0.0
    growth = slope * span
    level = float(np.median(np.abs(values)))
    flagged = bool(
        low > 0
        and growth >= max(min_growth, limits.min_growth_share * level)
        and later >= slope / 2
    )
    return {
        "leak": flagged,
        "slope_per_min": round(float(slope) * 60, 4),
        "slope_ci_per_min": [round(float(low) * 60, 4), round(float(high) * 60, 4)],
        "growth": round(float(growth), 3),
        "span_s": round(span, 1),
        "points": int(t_s.size),
        # the fitted line's ends: a first or last sample that happens to dip is not the trend
        "start": round(float(intercept + slope * t_s[0]), 3),
        "end": round(float(intercept + slope * t_s[-1]), 3),
    }


def check(
    series: dict[str, tuple[np.ndarray, np.ndarray]], limits: LeakLimits | None = None
) -> dict[str, dict[str, Any]]:
    """Verdicts for a server's ``{"rss_mb": (time_ns, values), "fds": ...}`` over one window."""
    out = {}
    for key, (times, values) in series.items():
        if key not in SERIES or not times.size:
            continue
        unit, floor = SERIES[key]
        verdict = trend((times - times[0]) / 1e9, values, limits, floor)
        if verdict is not None:
            out[key] = {**verdict, "unit": unit}
    return out


def describe(server: str, target: str, key: str, verdict: dict[str, Any]) -> str:
    """The health sentence for a flagged series."""
    low, high = verdict["slope_ci_per_min"]
    what = "memory (RSS)" if key == "rss_mb" else "open file descriptors"
    return (
        f"{server} during {target}: {what} grew steadily from about {verdict['start']:.4g} to "
        f"{verdict['end']:.4g} {verdict['unit']} over {verdict['span_s']:.0f} s "
        f"({verdict['slope_per_min']:+.3g} {verdict['unit']}/min, 95% CI {low:+.3g} to "
        f"{high:+.3g}): a possible leak."
    )
