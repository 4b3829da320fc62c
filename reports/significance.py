"""Is run B really slower than run A? Bootstrap intervals and a rank test on raw samples.

Two tools, both numpy only (no scipy), both seeded so a verdict is reproducible:

``percentile_diff_ci(a, b, q)``
    Percentile bootstrap interval of ``P_q(b) - P_q(a)`` (or of the relative change
    ``P_q(b) / P_q(a) - 1`` with ``relative=True``). The two samples are resampled independently.
    Percentiles use numpy's default ``linear`` method, the one ``reports.stats`` uses, so the
    estimate equals the number in ``summary.json``.

    The resampling is exact but never materialises the resamples: the k-th smallest of n draws
    with replacement from the sorted sample ``x`` is ``x[floor(n * U_(k))]`` where ``U_(k)`` is the
    k-th order statistic of n uniforms, distributed ``Beta(k, n - k + 1)``; the next one up is
    ``U_(k) + (1 - U_(k)) * Beta(1, n - k)``. A linear percentile needs just those two order
    statistics, so one bootstrap replicate costs O(1) after one sort, whatever n is (a run
    has hundreds of thousands of chunk lags). ``q`` may be ``"mean"``: then the replicates are
    drawn by plain index resampling, in batches, up to ``MEAN_RESAMPLE_MAX`` values; above that
    the mean's replicates come from its normal approximation (the CLT holds at that size).

Pooled samples (every chunk of every request: ITL, chunk lag) are not independent values — a
slow request makes all its chunks slow — so with ``groups`` the bootstrap resamples whole
requests (a cluster bootstrap): multinomial counts per request weight its values, and the
replicate is the weighted percentile (inverted CDF). Above ``max_values`` (default
``CLUSTER_VALUES_MAX``) values, every
request's values are thinned alike, which keeps the cost bounded and only widens the interval.

``mann_whitney(a, b)``
    Mann-Whitney U with the normal approximation, tie correction and continuity correction:
    one-sided p-values both ways and the probability of superiority ``P(B > A) + P(B = A) / 2``.
    Used where a metric is not a percentile of a per-request distribution (a whole-run rate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_MEAN_BATCH = 4_000_000  # values per resampling batch for means (~32 MB of indices)
MEAN_RESAMPLE_MAX = 20_000
CLUSTER_VALUES_MAX = 20_000  # pooled values kept for a cluster bootstrap (thinned above that)


@dataclass(frozen=True)
class Interval:
    """A point estimate and its two-sided confidence interval ``[low, high]``."""

    estimate: float
    low: float
    high: float
    confidence: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass(frozen=True)
class RankTest:
    """Mann-Whitney U of ``b`` against ``a``.

    ``p_greater`` is the one-sided p-value for "b tends to be larger than a", ``p_less`` for
    "smaller"; ``superiority`` is P(b > a) + P(b = a) / 2 (0.5 = no shift).
    """

    u: float
    z: float
    p_greater: float
    p_less: float
    superiority: float


def _clean(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).ravel()
    return x[~np.isnan(x)]


def _require(x: np.ndarray, name: str) -> None:
    if x.size == 0:
        raise ValueError(f"sample {name} is empty")


def _check_q(q: float | str) -> float | str:
    if q == "mean":
        return q
    q = float(q)
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    return q


def bootstrap_statistic(
    x: np.ndarray,
    q: float | str,
    n_boot: int,
    rng: np.random.Generator,
    groups: np.ndarray | None = None,
    max_values: int = CLUSTER_VALUES_MAX,
) -> tuple[float, np.ndarray]:
    """The statistic of ``x`` (a percentile 0..100, or ``"mean"``) and ``n_boot`` replicates.

    ``groups`` (one id per value, e.g. the request of each chunk) switches to a cluster
    bootstrap: whole groups are resampled, because values of one request are correlated.
    """
    q = _check_q(q)
    if groups is not None:
        return _bootstrap_clustered(x, groups, q, n_boot, rng, max_values)
    x = _clean(x)
    _require(x, "x")
    if q == "mean":
        return float(x.mean()), _bootstrap_means(x, n_boot, rng)
    s = np.sort(x)
    n = s.size
    estimate = float(np.percentile(s, q))
    if n == 1:
        return estimate, np.full(n_boot, s[0])
    h = (n - 1) * q / 100.0
    j = min(math.floor(h), n - 2)  # 0-based rank of the lower neighbour
    frac = h - j
    k = j + 1  # 1-based rank of the lower neighbour
    u_low = rng.beta(k, n - k + 1, size=n_boot)
    u_high = u_low + (1.0 - u_low) * rng.beta(1, n - k, size=n_boot)
    low = s[np.minimum((u_low * n).astype(np.int64), n - 1)]
    high = s[np.minimum((u_high * n).astype(np.int64), n - 1)]
    return estimate, low + frac * (high - low)


def _bootstrap_means(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    n = x.size
    if n > MEAN_RESAMPLE_MAX:
        return rng.normal(x.mean(), x.std(ddof=1) / math.sqrt(n), size=n_boot)
    out = np.empty(n_boot)
    rows = max(1, _MEAN_BATCH // n)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        out[start:stop] = x[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    return out


def _bootstrap_clustered(
    x: np.ndarray,
    groups: np.ndarray,
    q: float | str,
    n_boot: int,
    rng: np.random.Generator,
    max_values: int,
) -> tuple[float, np.ndarray]:
    x = np.asarray(x, dtype=np.float64).ravel()
    groups = np.asarray(groups).ravel()
    if groups.shape != x.shape:
        raise ValueError("groups must have one id per value")
    keep = ~np.isnan(x)
    x, groups = x[keep], groups[keep]
    _require(x, "x")
    estimate = float(x.mean() if q == "mean" else np.percentile(x, q))
    shift = 0.0
    if x.size > max_values:  # thin every group alike: the interval only gets wider ...
        keep = rng.random(x.size) < max_values / x.size
        x, groups = x[keep], groups[keep]
        # ... and its replicates are centred on the full sample's estimate, not the thinned one's
        shift = estimate - float(x.mean() if q == "mean" else np.percentile(x, q))
    _, g = np.unique(groups, return_inverse=True)
    m = int(g.max()) + 1
    out = np.empty(n_boot)
    if q == "mean":
        sums = np.bincount(g, weights=x, minlength=m)
        lens = np.bincount(g, minlength=m).astype(np.float64)
    else:
        order = np.argsort(x, kind="stable")
        s, gs = x[order], g[order]
    rows = max(1, _MEAN_BATCH // max(x.size, m))
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        counts = _draw_counts(m, stop - start, rng)  # how often each group is drawn
        if q == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                out[start:stop] = (counts @ sums) / (counts @ lens)
            continue
        cum = np.cumsum(counts[:, gs], axis=1)  # weighted CDF over the sorted values
        target = np.maximum(cum[:, -1] * (float(q) / 100.0), 0.5)  # q=0: first drawn value
        idx = np.minimum((cum < target[:, None]).sum(axis=1), s.size - 1)
        out[start:stop] = s[idx]
    return estimate, out + shift


def _draw_counts(m: int, rows: int, rng: np.random.Generator) -> np.ndarray:
    """``rows`` multinomial(m, uniform) count vectors: m groups drawn with replacement, counted.

    Drawing the m indices and counting them is the same distribution as ``rng.multinomial``
    with equal probabilities, and several times faster for thousands of groups.
    """
    picks = rng.integers(0, m, size=(rows, m), dtype=np.int64)
    picks += np.arange(rows, dtype=np.int64)[:, None] * m
    return np.bincount(picks.ravel(), minlength=rows * m).reshape(rows, m)


def percentile_diff_ci(
    a: np.ndarray,
    b: np.ndarray,
    q: float | str,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    *,
    relative: bool = False,
    groups_a: np.ndarray | None = None,
    groups_b: np.ndarray | None = None,
    max_values: int = CLUSTER_VALUES_MAX,
) -> Interval:
    """Bootstrap interval of ``P_q(b) - P_q(a)``; ``relative=True``: of ``P_q(b) / P_q(a) - 1``.

    ``a`` is the reference (the baseline), ``b`` the sample under test; ``q`` is a percentile in
    0..100 or ``"mean"``. NaNs are dropped. Same seed, same samples -> same interval.
    ``groups_a`` / ``groups_b``: the cluster (request) of each value, for pooled per-chunk
    samples such as ITL or chunk lag — whole requests are resampled.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be within (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    est_a, boot_a = bootstrap_statistic(a, q, n_boot, rng, groups_a, max_values)
    est_b, boot_b = bootstrap_statistic(b, q, n_boot, rng, groups_b, max_values)
    if relative:
        if est_a <= 0:
            raise ValueError("relative change needs a positive reference statistic")
        with np.errstate(divide="ignore", invalid="ignore"):
            boot = boot_b / boot_a - 1.0
        estimate = est_b / est_a - 1.0
    else:
        boot = boot_b - boot_a
        estimate = est_b - est_a
    alpha = 1.0 - confidence
    low, high = np.nanquantile(boot, [alpha / 2, 1 - alpha / 2])
    return Interval(float(estimate), float(low), float(high), confidence)


def mann_whitney(a: np.ndarray, b: np.ndarray) -> RankTest:
    """Mann-Whitney U of ``b`` against ``a``: normal approximation, tie and continuity corrected."""
    a, b = _clean(a), _clean(b)
    _require(a, "a")
    _require(b, "b")
    n1, n2 = b.size, a.size
    both = np.concatenate([b, a])
    _, inverse, counts = np.unique(both, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]  # average 1-based rank of each tie group
    u = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2.0)
    n = n1 + n2
    ties = float(np.sum(counts.astype(np.float64) ** 3 - counts))
    var = n1 * n2 / 12.0 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    mu = n1 * n2 / 2.0
    if var <= 0:
        return RankTest(u, 0.0, 1.0, 1.0, u / (n1 * n2))
    sd = math.sqrt(var)
    z_greater = (u - mu - 0.5) / sd
    z_less = (u - mu + 0.5) / sd
    return RankTest(
        u=u,
        z=(u - mu) / sd,
        p_greater=0.5 * math.erfc(z_greater / math.sqrt(2)),
        p_less=0.5 * math.erfc(-z_less / math.sqrt(2)),
        superiority=u / (n1 * n2),
    )
