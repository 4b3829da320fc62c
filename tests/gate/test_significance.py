"""The statistics behind relative checks: exact, seeded, sensitive, and quiet on noise."""

from __future__ import annotations

import numpy as np
import pytest

from reports.gate import judge_change
from reports.significance import bootstrap_statistic, mann_whitney, percentile_diff_ci


def ttft_sample(rng: np.random.Generator, n: int, scale: float = 1.0) -> np.ndarray:
    """A TTFT-like sample: lognormal around 200 ms with a long right tail."""
    return 200.0 * scale * rng.lognormal(0.0, 0.4, n)


@pytest.mark.parametrize("q", [50, 95, 99])
def test_order_statistic_bootstrap_matches_brute_force_resampling(q):
    x = ttft_sample(np.random.default_rng(7), 250)
    estimate, fast = bootstrap_statistic(x, q, 20_000, np.random.default_rng(1))
    idx = np.random.default_rng(2).integers(0, x.size, (20_000, x.size))
    slow = np.percentile(x[idx], q, axis=1)
    assert estimate == np.percentile(x, q)  # the summary's (linear) percentile, exactly
    assert fast.mean() == pytest.approx(slow.mean(), rel=0.01)
    assert fast.std() == pytest.approx(slow.std(), rel=0.05)
    assert np.quantile(fast, [0.025, 0.975]) == pytest.approx(
        np.quantile(slow, [0.025, 0.975]), rel=0.02
    )


def test_mean_bootstrap_both_paths():
    rng = np.random.default_rng(3)
    small = rng.normal(100, 10, 400)
    est, boot = bootstrap_statistic(small, "mean", 4000, np.random.default_rng(0))
    assert est == pytest.approx(small.mean())
    assert boot.std() == pytest.approx(10 / np.sqrt(400), rel=0.1)
    big = rng.normal(100, 10, 50_000)  # above MEAN_RESAMPLE_MAX: normal approximation
    _, boot = bootstrap_statistic(big, "mean", 4000, np.random.default_rng(0))
    assert boot.std() == pytest.approx(10 / np.sqrt(50_000), rel=0.1)


def test_seeded_and_reproducible():
    rng = np.random.default_rng(0)
    a, b = ttft_sample(rng, 300), ttft_sample(rng, 300)
    assert percentile_diff_ci(a, b, 95, seed=4) == percentile_diff_ci(a, b, 95, seed=4)
    assert percentile_diff_ci(a, b, 95, seed=4) != percentile_diff_ci(a, b, 95, seed=5)


def test_absolute_difference_interval():
    rng = np.random.default_rng(11)
    a = rng.normal(100, 5, 500)
    iv = percentile_diff_ci(a, a + 30, 50, n_boot=1000)
    assert iv.estimate == pytest.approx(30.0)
    assert iv.low < 30 < iv.high
    assert iv.excludes_zero()


def test_flags_a_20_percent_ttft_shift_with_a_few_hundred_samples():
    """Tolerance +10%, true shift +20%, 300 requests each side: the gate rule fails the run."""
    flagged = {50: 0, 95: 0}
    for seed in range(30):
        rng = np.random.default_rng(1000 + seed)
        base, slow = ttft_sample(rng, 300), ttft_sample(rng, 300, scale=1.2)
        for q in flagged:
            iv = percentile_diff_ci(base, slow, q, n_boot=1000, seed=seed, relative=True)
            violated, significant = judge_change("<=", 0.10, iv)
            flagged[q] += violated and significant
            if q == 50:
                assert iv.low > 0, iv  # a 20% median shift is always significant at n=300
    assert flagged[50] >= 27, flagged  # power ~95% at the median
    assert flagged[95] >= 18, flagged  # the p95 of 300 samples is noisier


def test_false_positive_rate_on_identical_distributions():
    """100 seeds, identical distributions, zero tolerance: the rule fails at most ~5-8%."""
    fails = {50: 0, 95: 0}
    two_sided = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        a, b = ttft_sample(rng, 300), ttft_sample(rng, 300)
        for q in fails:
            iv = percentile_diff_ci(a, b, q, n_boot=1000, seed=seed, relative=True)
            violated, significant = judge_change("<=", 0.0, iv)
            fails[q] += violated and significant
            two_sided += iv.excludes_zero()
    assert fails[50] <= 8 and fails[95] <= 8, fails
    assert two_sided <= 16, two_sided  # of 200 intervals: a 95% interval misses ~5%, at most 8%


def test_judge_change_rule():
    from reports.significance import Interval

    def iv(est, lo, hi):
        return Interval(est, lo, hi, 0.95)

    assert judge_change("<=", 0.10, iv(0.2, 0.05, 0.35)) == (True, True)  # fails
    assert judge_change("<=", 0.10, iv(0.2, -0.05, 0.45)) == (True, False)  # noise: passes
    assert judge_change("<=", 0.10, iv(0.05, 0.01, 0.09)) == (False, True)  # real, but small
    assert judge_change(">=", -0.05, iv(-0.2, -0.3, -0.1)) == (True, True)
    assert judge_change(">=", -0.05, iv(-0.2, -0.4, 0.01)) == (True, False)
    # a tolerance that demands a speed-up: significant means surely short of it
    assert judge_change("<=", -0.10, iv(-0.05, -0.08, -0.02)) == (True, True)
    assert judge_change("<=", -0.10, iv(-0.05, -0.12, 0.02)) == (True, False)


def test_mann_whitney_exact_small_case_and_ties():
    test = mann_whitney(np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0]))
    assert test.u == 9.0 and test.superiority == 1.0
    assert test.p_greater < 0.05 < test.p_less
    tied = mann_whitney(np.full(10, 5.0), np.full(10, 5.0))
    assert tied.superiority == 0.5 and tied.p_greater == 1.0 and tied.p_less == 1.0
    half = mann_whitney(np.array([1.0, 2.0]), np.array([2.0, 3.0]))
    assert half.u == 3.5  # the tie at 2 counts one half


def test_mann_whitney_detects_a_shift_and_stays_quiet_without_one():
    rng = np.random.default_rng(5)
    a = ttft_sample(rng, 400)
    assert mann_whitney(a, ttft_sample(rng, 400, 1.2)).p_greater < 1e-4
    quiet = sum(
        mann_whitney(ttft_sample(r, 300), ttft_sample(r, 300)).p_greater < 0.05
        for r in map(np.random.default_rng, range(100))
    )
    assert quiet <= 8


def test_bad_inputs():
    with pytest.raises(ValueError, match="empty"):
        percentile_diff_ci(np.array([]), np.array([1.0]), 50)
    with pytest.raises(ValueError, match="confidence"):
        percentile_diff_ci(np.array([1.0]), np.array([1.0]), 50, confidence=1.5)
    with pytest.raises(ValueError, match="percentile"):
        percentile_diff_ci(np.array([1.0]), np.array([1.0]), 150)
    with pytest.raises(ValueError, match="positive"):
        percentile_diff_ci(np.zeros(5), np.ones(5), 50, relative=True)
    with pytest.raises(ValueError, match="empty"):
        mann_whitney(np.array([np.nan]), np.array([1.0]))


def chunk_sample(rng: np.random.Generator, n_req: int = 60, chunks: int = 40, scale: float = 1.0):
    """Pooled per-chunk values where a slow request is slow on every chunk (like chunk lag)."""
    offset = rng.lognormal(0.0, 0.5, n_req)
    values = scale * (offset[:, None] + rng.exponential(0.3, (n_req, chunks)))
    return values.ravel(), np.repeat(np.arange(n_req), chunks)


def test_cluster_bootstrap_keeps_pooled_chunk_samples_honest():
    """Resampling chunks as if independent flags identical runs often; resampling requests not."""
    naive = clustered = flagged = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        (a, ga), (b, gb) = chunk_sample(rng), chunk_sample(rng)
        iv = percentile_diff_ci(a, b, 95, n_boot=400, seed=seed, relative=True)
        naive += all(judge_change("<=", 0.0, iv))
        iv = percentile_diff_ci(
            a, b, 95, n_boot=400, seed=seed, relative=True, groups_a=ga, groups_b=gb
        )
        clustered += all(judge_change("<=", 0.0, iv))
        c, gc = chunk_sample(rng, scale=1.5)
        iv = percentile_diff_ci(
            a, c, 50, n_boot=400, seed=seed, relative=True, groups_a=ga, groups_b=gc
        )
        flagged += all(judge_change("<=", 0.10, iv))
    assert naive >= 8, naive  # the independence assumption is badly wrong here...
    assert clustered <= 4, clustered  # ...the cluster bootstrap stays near its nominal rate
    assert flagged >= 36, flagged  # and still catches a +50% regression


def test_cluster_bootstrap_mean_and_thinning():
    rng = np.random.default_rng(9)
    x, groups = chunk_sample(rng, n_req=2000, chunks=20)  # 40k values: thinned to 20k
    est, boot = bootstrap_statistic(x, "mean", 500, np.random.default_rng(0), groups)
    assert est == pytest.approx(x.mean())
    per_request = x.reshape(2000, 20).mean(axis=1)
    assert boot.std() == pytest.approx(per_request.std() / np.sqrt(2000), rel=0.15)
    est, boot = bootstrap_statistic(x, 99, 500, np.random.default_rng(0), groups)
    assert est == np.percentile(x, 99)
    assert abs(np.median(boot) - est) < 3 * boot.std()
    with pytest.raises(ValueError, match="one id per value"):
        bootstrap_statistic(x, 50, 10, np.random.default_rng(0), groups[:5])
