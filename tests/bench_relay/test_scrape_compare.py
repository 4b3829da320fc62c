"""``bench_relay --scrape-compare``'s verdict: run-to-run noise over pairs of runs, not one
run's interval."""

from __future__ import annotations

import math

import orjson

from relaybench.run.scrapecompare import format_effect, harness_cpu, pairs, scrape_effect


def _row(
    rep: int, ttft: float, lag: float, cpu: float, *, half_width: float = 0.2, scraper: float = 0.0
) -> dict:
    def block(value: float) -> dict:
        return {
            "p50": value,
            "p50_ci": {"value": value, "ci_low": value - half_width, "ci_high": value + half_width},
        }

    return {
        "streams": 100,
        "rep": rep,
        "added_ttft_ms": block(ttft),
        "added_first_token_lag_ms": block(lag),
        "harness_cpu": {
            "loadgen_mean_pct": cpu,
            "scraper_pct": scraper,
            "total_pct": cpu + scraper,
        },
    }


def _level(off: list[dict], on: list[dict]) -> dict:
    (level,) = scrape_effect(off, on)
    return level


def test_pairs_that_drift_as_much_with_scraping_off_are_within_noise():
    # each run's own interval is ±0.2 ms, so pairs 2 and 3 would look "different" one by one;
    # across the pairs the differences scatter around 0
    off = [_row(1, 0.85, 0.19, 24.9), _row(2, 2.38, 0.28, 22.4), _row(3, 1.99, 0.21, 23.1)]
    on = [_row(1, 1.13, 0.30, 24.6, scraper=0.4), _row(2, 0.03, 0.31, 24.4, scraper=0.4),
          _row(3, 1.60, 0.27, 22.2, scraper=0.4)]  # fmt: skip
    level = _level(off, on)
    ttft = level["figures"]["added TTFT p50"]
    assert ttft["test"] == "paired-t" and ttft["within_noise"] is True
    assert ttft["ci_low"] < 0 < ttft["ci_high"] and ttft["pairs"] == 3
    assert ttft["off_median"] == 1.99 and ttft["on_median"] == 1.13
    assert level["cpu"]["rises"] == [0.1, 2.4, -0.5] and level["cpu"]["median"] == 0.1
    assert level["cpu"]["met"] is True
    text = "\n".join(format_effect(level))
    assert "streams 100 (3 pairs of runs, off and on)" in text
    assert "added TTFT p50: median off 1.99, on 1.13 ms" in text and "within noise" in text
    assert "harness CPU rise: median +0.10 points" in text and "met" in text


def test_a_rise_in_every_pair_is_different_though_the_runs_overlap_across_pairs():
    # unpaired, on (0.6-2.2) and off (0.5-2.0) overlap; paired, on is higher by 0.1-0.2 each time
    off = [_row(1, 0.50, 0.20, 20.0), _row(2, 1.20, 0.21, 21.0), _row(3, 2.00, 0.19, 20.5)]
    on = [_row(1, 0.60, 0.90, 23.0), _row(2, 1.40, 0.95, 22.5), _row(3, 2.15, 0.92, 22.0)]
    level = _level(off, on)
    for label in ("added TTFT p50", "added first-token lag p50"):
        fig = level["figures"][label]
        assert fig["within_noise"] is False and fig["ci_low"] > 0, label
    assert level["cpu"]["median"] == 1.5 and level["cpu"]["met"] is False
    text = "\n".join(format_effect(level))
    assert text.count("DIFFERENT") == 2 and "MISSED" in text


def test_runs_are_paired_by_level_and_run_not_by_position():
    off = [_row(1, 0.5, 0.2, 20.0), _row(2, 0.6, 0.2, 20.0), _row(3, 0.7, 0.2, 20.0)]
    on = [_row(3, 0.7, 0.2, 20.0), _row(1, 0.5, 0.2, 20.0)]  # run 2 was cut off
    matched = pairs(off, on)
    assert [(a["rep"], b["rep"]) for a, b in matched] == [(1, 1), (3, 3)]
    fig = _level(off, on)["figures"]["added TTFT p50"]
    # the same difference (0) in both pairs: no t interval; the runs' own intervals overlap
    assert fig["pairs"] == 2 and fig["test"] == "bootstrap-overlap"
    assert fig["reason"] == "the same difference in every pair" and fig["within_noise"] is True


def test_one_pair_falls_back_to_the_runs_own_intervals():
    apart = _level([_row(1, 0.5, 0.2, 20.0)], [_row(1, 2.0, 0.2, 20.0)])
    assert apart["figures"]["added TTFT p50"]["test"] == "bootstrap-overlap"
    assert apart["figures"]["added TTFT p50"]["within_noise"] is False
    assert apart["figures"]["added first-token lag p50"]["within_noise"] is True
    assert "one pair: each pair's bootstrap intervals" in "\n".join(format_effect(apart))


def test_a_missing_or_nan_figure_leaves_its_pair_out():
    on = _row(1, 1.0, 0.2, 20.0)
    on["added_first_token_lag_ms"] = {"p50": None, "p50_ci": None}
    level = _level([_row(1, 1.0, 0.2, 20.0)], [on])
    assert level["figures"]["added first-token lag p50"] is None
    assert "added first-token lag p50: n/a" in "\n".join(format_effect(level))
    off = [_row(1, 1.0, 0.2, 20.0), _row(2, math.nan, 0.2, 20.0), _row(3, 1.2, 0.2, 20.0)]
    on = [_row(1, 1.1, 0.2, 20.0), _row(2, 1.0, 0.2, 20.0), _row(3, 1.2, 0.2, 20.0)]
    fig = _level(off, on)["figures"]["added TTFT p50"]
    assert fig["pairs"] == 2 and fig["off"] == [1.0, 1.2] and math.isfinite(fig["ci_high"])


def test_harness_cpu_adds_the_scraper_threads_to_the_load_generator(tmp_path):
    (tmp_path / "loadgen").mkdir()
    (tmp_path / "loadgen" / "relay.w1.jsonl").write_bytes(
        b'{"cpu_pct": 20.0}\n{"cpu_pct": 30.0}\n\n'
    )
    assert harness_cpu(tmp_path) == {
        "loadgen_mean_pct": 25.0,
        "scraper_pct": 0.0,
        "total_pct": 25.0,
    }
    (tmp_path / "server").mkdir()
    sources = {"wall_s": 10.0, "sources": [{"cpu_s": 0.03}, {"cpu_s": 0.01}, {"cpu_s": None}]}
    (tmp_path / "server" / "sources.json").write_bytes(orjson.dumps(sources))
    assert harness_cpu(tmp_path) == {
        "loadgen_mean_pct": 25.0,
        "scraper_pct": 0.4,
        "total_pct": 25.4,
    }
