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
) -> dict:
    """Percentile-``q`` of ``b`` minus that of ``a`` with its bootstrap interval, as JSON.

    The interval comes from ``reports.significance.percentile_diff_ci`` (exact order-statistic
    bootstrap, 2000 replicates, seeded). The estimate always uses every value; a side larger
    than ``max_n`` (pooled chunk lags of a million requests) is bootstrapped from a random
    subsample of ``max_n`` values and the interval re-centred on the full estimate: the
    subsample's interval is wider than the full sample's, so this errs on the cautious side.
    """
    rng = np.random.default_rng(seed)
    a = _finite(a)
    b = _finite(b)
    estimate = float(np.percentile(b, q) - np.percentile(a, q))
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


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def _subsample(values: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if values.size <= n:
        return values
    return values[rng.integers(0, values.size, n)]
