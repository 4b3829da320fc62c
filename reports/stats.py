"""The contract's STATS block (``relaybench.records.Stats``) and the percentile method every
number in the reports uses.

Percentiles are exact, computed from the raw values with numpy's default ``linear`` method
(type 7 of Hyndman & Fan: the value at rank ``(n - 1) * q`` interpolated between its two
neighbours). Values are rounded to 3 decimals (microseconds for millisecond fields).
An empty set gives ``count: 0`` and ``null`` for every other field, which stays valid JSON and
cannot be mistaken for a measured zero.
"""

from __future__ import annotations

import numpy as np

from relaybench.records import PERCENTILES, STAT_KEYS, Stats
from reports.significance import percentile_diff_ci

SUMMARY_CLUSTER_VALUES = 8_000


def _round(value: float) -> float:
    return round(float(value), 3)


def stats(values: np.ndarray) -> Stats:
    """count, mean, p50, p90, p95, p99, max of ``values`` (NaNs dropped)."""
    values = np.asarray(values, dtype=np.float64)
    if np.isnan(values).any():
        values = values[~np.isnan(values)]
    if values.size == 0:
        return {key: (0 if key == "count" else None) for key in STAT_KEYS}  # type: ignore[return-value]
    qs = np.percentile(values, list(PERCENTILES.values()))
    out: dict = {"count": int(values.size), "mean": _round(values.mean())}
    out.update({key: _round(q) for key, q in zip(PERCENTILES, qs, strict=True)})
    out["max"] = _round(values.max())
    return out


def quantile(values: np.ndarray, q: float) -> float | None:
    """One percentile (``q`` in 0..100) or None for an empty set."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(np.percentile(values, q)) if values.size else None


def bootstrap_diff(
    a: np.ndarray,
    b: np.ndarray,
    q: float,
    *,
    confidence: float = 0.95,
    seed: int = 0,
    groups_a: np.ndarray | None = None,
    groups_b: np.ndarray | None = None,
) -> dict:
    """Percentile-``q`` of ``b`` minus that of ``a`` with its bootstrap interval, as JSON.

    The interval comes from ``reports.significance.percentile_diff_ci`` (seeded), which bounds
    its own cost: independent values (one per request) by an exact order-statistic bootstrap,
    pooled per-chunk values (``groups_*`` = the request of each value) by a cluster bootstrap
    that thins large samples (here to ``SUMMARY_CLUSTER_VALUES`` values, 1,000 replicates: every
    report pays for it, and a thinner sample only widens the interval). The estimate always uses
    every value.
    """
    a, groups_a = _finite(a, groups_a)
    b, groups_b = _finite(b, groups_b)
    n_boot = 1000 if groups_a is not None and groups_b is not None else 2000
    ci = percentile_diff_ci(
        a,
        b,
        q,
        confidence=confidence,
        n_boot=n_boot,
        seed=seed,
        groups_a=groups_a,
        groups_b=groups_b,
        max_values=SUMMARY_CLUSTER_VALUES,
    )
    return {
        "value": _round(ci.estimate),
        "ci_low": _round(ci.low),
        "ci_high": _round(ci.high),
        "n_a": int(a.size),
        "n_b": int(b.size),
    }


def _finite(values: np.ndarray, groups: np.ndarray | None = None):
    values = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(values)
    if groups is None:
        return values[keep], None
    return values[keep], np.asarray(groups)[keep]
