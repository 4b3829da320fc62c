"""The contract's STATS block and the percentile method every number in the reports uses.

Percentiles are exact, computed from the raw values with numpy's default ``linear`` method
(type 7 of Hyndman & Fan: the value at rank ``(n - 1) * q`` interpolated between its two
neighbours). Values are rounded to 3 decimals (microseconds for millisecond fields).
An empty set gives ``count: 0`` and ``null`` for every other field, which stays valid JSON and
cannot be mistaken for a measured zero.
"""

from __future__ import annotations

import numpy as np

from reports.significance import percentile_diff_ci

QUANTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0}
STAT_KEYS = ("count", "mean", "p50", "p90", "p95", "p99", "max")


def _round(value: float) -> float:
    return round(float(value), 3)


def stats(values: np.ndarray) -> dict:
    """count, mean, p50, p90, p95, p99, max of ``values`` (NaNs dropped)."""
    values = np.asarray(values, dtype=np.float64)
    if np.isnan(values).any():
        values = values[~np.isnan(values)]
    if values.size == 0:
        return {key: (0 if key == "count" else None) for key in STAT_KEYS}
    qs = np.percentile(values, list(QUANTILES.values()))
    out: dict = {"count": int(values.size), "mean": _round(values.mean())}
    out.update({key: _round(q) for key, q in zip(QUANTILES, qs, strict=True)})
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
    max_n: int = 500_000,
    groups_a: np.ndarray | None = None,
    groups_b: np.ndarray | None = None,
    max_cluster_values: int = 8_000,
) -> dict:
    """Percentile-``q`` of ``b`` minus that of ``a`` with its bootstrap interval, as JSON.

    The interval comes from ``reports.significance.percentile_diff_ci`` (seeded). The estimate
    always uses every value. Independent values (one per request): exact order-statistic
    bootstrap; a side larger than ``max_n`` is bootstrapped from a random subsample of ``max_n``
    values. Pooled per-chunk values (``groups_*`` = the request of each value): cluster
    bootstrap over whole requests, on a random subset of requests holding about
    ``max_cluster_values`` values (1,000 replicates). Either way a subsample's interval is
    re-centred on the full estimate; it is wider than the full sample's would be, so this errs
    on the cautious side.
    """
    rng = np.random.default_rng(seed)
    a, groups_a = _finite(a, groups_a)
    b, groups_b = _finite(b, groups_b)
    estimate = float(np.percentile(b, q) - np.percentile(a, q))
    if groups_a is not None and groups_b is not None:
        sa, ga = _cluster_subsample(a, groups_a, max_cluster_values, rng)
        sb, gb = _cluster_subsample(b, groups_b, max_cluster_values, rng)
        ci = percentile_diff_ci(
            sa, sb, q, confidence=confidence, seed=seed, n_boot=1000, groups_a=ga, groups_b=gb
        )
    else:
        sa, sb = _subsample(a, max_n, rng), _subsample(b, max_n, rng)
        ci = percentile_diff_ci(sa, sb, q, confidence=confidence, seed=seed)
    shift = estimate - ci.estimate
    return {
        "value": _round(estimate),
        "ci_low": _round(ci.low + shift),
        "ci_high": _round(ci.high + shift),
        "n_a": int(a.size),
        "n_b": int(b.size),
    }


def _cluster_subsample(
    values: np.ndarray, groups: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Whole groups (integer ids, e.g. record rows), picked at random, until about ``n`` values."""
    if values.size <= n:
        return values, groups
    groups = np.asarray(groups, dtype=np.int64)  # row positions: small non-negative ints
    present = np.zeros(int(groups.max()) + 1, dtype=bool)
    present[groups] = True
    ids = np.flatnonzero(present)
    take = max(2, int(ids.size * n / values.size))
    chosen = np.zeros_like(present)
    chosen[rng.choice(ids, min(take, ids.size), replace=False)] = True
    keep = chosen[groups]  # O(n) masks, no sort: millions of chunk lags stay cheap
    return values[keep], groups[keep]


def _finite(values: np.ndarray, groups: np.ndarray | None = None):
    values = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(values)
    if groups is None:
        return values[keep], None
    return values[keep], np.asarray(groups)[keep]


def _subsample(values: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if values.size <= n:
        return values
    return values[rng.integers(0, values.size, n)]
