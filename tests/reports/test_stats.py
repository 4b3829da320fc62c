import numpy as np
import pytest

from reports.stats import bootstrap_diff, quantile, stats


def test_stats_match_hand_computed_linear_percentiles():
    # ranks (n-1)*q: p50 -> 1.5 -> 2.5; p90 -> 2.7 -> 3.7; p95 -> 2.85 -> 3.85; p99 -> 3.97
    out = stats(np.array([4.0, 1.0, 3.0, 2.0]))
    assert out == {
        "count": 4, "mean": 2.5, "p50": 2.5, "p90": 3.7, "p95": 3.85, "p99": 3.97, "max": 4.0
    }  # fmt: skip


def test_stats_ignore_nan_and_single_value():
    out = stats(np.array([np.nan, 7.0]))
    assert out["count"] == 1
    assert out["p50"] == out["p99"] == out["max"] == 7.0


def test_empty_stats_are_count_zero_and_null():
    out = stats(np.array([]))
    assert out["count"] == 0
    assert all(out[k] is None for k in ("mean", "p50", "p90", "p95", "p99", "max"))
    assert quantile(np.array([]), 50) is None


def test_bootstrap_diff_finds_a_real_shift_and_covers_zero_without_one():
    rng = np.random.default_rng(3)
    a = rng.normal(100, 10, 2000)
    shifted = bootstrap_diff(a, rng.normal(110, 10, 2000), 50)
    assert shifted["ci_low"] > 5 and shifted["ci_high"] < 15
    assert shifted["ci_low"] <= shifted["value"] <= shifted["ci_high"]
    same = bootstrap_diff(a, rng.normal(100, 10, 2000), 50)
    assert same["ci_low"] < 0 < same["ci_high"]


@pytest.mark.parametrize("q", [50, 95])
def test_bootstrap_point_uses_every_value(q):
    a = np.arange(50_000, dtype=float)
    out = bootstrap_diff(a, a + 3, q)
    assert out["value"] == 3.0
    assert out["n_a"] == 50_000
