"""The leak detector: a steadily growing series is flagged, a flat, noisy or levelling one not."""

from __future__ import annotations

import numpy as np

from reports import leaks

SECONDS = np.arange(0, 120, 1.0)  # two minutes of 1 s samples
RNG = np.random.default_rng(7)


def _ns(seconds: np.ndarray) -> np.ndarray:
    return (1_700_000_000e9 + seconds * 1e9).astype(np.int64)


def test_a_steadily_growing_rss_is_flagged_with_its_slope() -> None:
    rss = 80 + 0.1 * SECONDS + RNG.normal(0, 0.5, SECONDS.size)  # +6 MiB/min, noisy
    verdict = leaks.check({"rss_mb": (_ns(SECONDS), rss)})["rss_mb"]
    assert verdict["leak"] is True
    low, high = verdict["slope_ci_per_min"]
    assert low <= 6.0 <= high and low > 0
    assert "grew steadily" in leaks.describe("relay", "relay", "rss_mb", verdict)


def test_a_flat_noisy_rss_is_not_flagged() -> None:
    rss = 80 + RNG.normal(0, 2.0, SECONDS.size)
    verdict = leaks.check({"rss_mb": (_ns(SECONDS), rss)})["rss_mb"]
    assert verdict["leak"] is False
    low, high = verdict["slope_ci_per_min"]
    assert low <= 0 <= high


def test_a_pool_that_fills_once_then_levels_off_is_not_a_leak() -> None:
    """fds rise by 100 over the first half (connections opening), then stay: no leak."""
    fds = np.minimum(20 + 2.0 * SECONDS, 120.0)
    verdict = leaks.check({"fds": (_ns(SECONDS), fds)})["fds"]
    assert verdict["leak"] is False


def test_tiny_growth_is_below_the_floor() -> None:
    """0.5 MiB over two minutes: a real trend, but not worth a flag."""
    rss = 80 + (0.5 / 120) * SECONDS
    assert leaks.check({"rss_mb": (_ns(SECONDS), rss)})["rss_mb"]["leak"] is False


def test_growing_fds_are_flagged() -> None:
    fds = 30 + np.floor(SECONDS / 4)  # one descriptor more every 4 s, never closed
    assert leaks.check({"fds": (_ns(SECONDS), fds)})["fds"]["leak"] is True


def test_a_short_series_is_not_judged() -> None:
    short = np.arange(0, 10, 1.0)
    assert leaks.check({"rss_mb": (_ns(short), 80 + 5 * short)}) == {}


def test_a_long_soak_is_judged_on_binned_medians() -> None:
    """Three hours of 1 s samples (10,800 points) are binned, and the verdict stands."""
    hours = np.arange(0, 3 * 3600, 1.0)
    rss = 80 + hours / 600 + RNG.normal(0, 1.0, hours.size)  # +6 MiB an hour
    verdict = leaks.check({"rss_mb": (_ns(hours), rss)})["rss_mb"]
    assert verdict["leak"] is True and verdict["points"] <= leaks.MAX_POINTS


def test_the_sentence_reads_the_fitted_line_not_a_dipping_last_sample() -> None:
    """A growing RSS whose last sample dips (a GC, an arena returned) below its first judged one
    still reads as growth from the trend's start to its end, with three significant digits."""
    rss = 80 + 0.1 * SECONDS + RNG.normal(0, 0.3, SECONDS.size)
    rss[-1] = 70.0
    verdict = leaks.check({"rss_mb": (_ns(SECONDS), rss)})["rss_mb"]
    assert verdict["leak"] is True
    assert verdict["start"] < verdict["end"]
    assert abs(verdict["start"] - (80 + 0.1 * 24)) < 1.0  # the window after the 20% warm-up
    assert abs(verdict["end"] - (80 + 0.1 * 119)) < 1.0
    sentence = leaks.describe("relay", "relay", "rss_mb", verdict)
    low, high = verdict["slope_ci_per_min"]
    assert (
        f"({verdict['slope_per_min']:+.3g} MiB/min, 95% CI {low:+.3g} to {high:+.3g})" in sentence
    )
