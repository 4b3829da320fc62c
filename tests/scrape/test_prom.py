"""Prometheus text → snapshots → per-interval rates, gauges and histogram quantiles."""

from __future__ import annotations

import math

import numpy as np
import pytest

from relaybench.scrape import prom

BEFORE = """\
# HELP relay_requests_total Finished requests.
# TYPE relay_requests_total counter
relay_requests_total{route="/v1/chat/completions",status="200"} 100
relay_requests_total{route="/v1/chat/completions",status="429"} 4
# TYPE relay_active_streams gauge
relay_active_streams 12
# TYPE relay_upstream_first_byte_seconds histogram
relay_upstream_first_byte_seconds_bucket{le="0.01"} 10
relay_upstream_first_byte_seconds_bucket{le="0.1"} 20
relay_upstream_first_byte_seconds_bucket{le="1.0"} 20
relay_upstream_first_byte_seconds_bucket{le="+Inf"} 20
relay_upstream_first_byte_seconds_sum 0.9
relay_upstream_first_byte_seconds_count 20
# TYPE relay_requests_created gauge
relay_requests_created{route="/v1/chat/completions",status="200"} 1.7e9
"""

# 2 s later: +50 ok, +6 rate-limited; 100 new first-byte times, all between 0.1 and 1 s
AFTER = (
    BEFORE.replace("} 100\n", "} 150\n")
    .replace('status="429"} 4', 'status="429"} 10')
    .replace("relay_active_streams 12", "relay_active_streams 30")
    .replace('le="1.0"} 20', 'le="1.0"} 120')
    .replace('le="+Inf"} 20', 'le="+Inf"} 120')
    .replace("_count 20", "_count 120")
    .replace("_sum 0.9", "_sum 55.9")
)


def test_counters_become_per_second_rates_and_gauges_stay_as_scraped() -> None:
    values = prom.interval(prom.parse(BEFORE), prom.parse(AFTER), 2.0)
    rates = values["rates"]
    assert rates['relay_requests_total{route="/v1/chat/completions",status="200"}'] == 25.0
    assert rates['relay_requests_total{route="/v1/chat/completions",status="429"}'] == 3.0
    assert values["gauges"] == {"relay_active_streams": 30.0}  # no _created timestamps


def test_histogram_quantiles_come_from_this_interval_only() -> None:
    """The 20 old observations (<= 0.1 s) must not pull this interval's quantiles down."""
    values = prom.interval(prom.parse(BEFORE), prom.parse(AFTER), 2.0)
    block = values["quantiles"]["relay_upstream_first_byte_seconds"]
    assert block["count"] == 100
    assert block["mean"] == pytest.approx(0.55)  # exact, from _sum: (55.9 - 0.9) / 100
    # 100 observations spread over (0.1, 1.0]: linear interpolation inside the bucket
    assert block["p50"] == pytest.approx(0.1 + 0.9 * 0.50)
    assert block["p95"] == pytest.approx(0.1 + 0.9 * 0.95)
    assert values["rates"]["relay_upstream_first_byte_seconds_count"] == 50.0
    # over the whole history half the observations are faster than 0.1 s: different answer
    whole = prom.parse(AFTER).histograms["relay_upstream_first_byte_seconds"]
    assert prom.bucket_quantile(0.5, whole.bounds, whole.cumulative) < 0.5


def test_interval_without_observations_has_no_quantile() -> None:
    snap = prom.parse(BEFORE)
    block = prom.interval(snap, snap, 1.0)["quantiles"]["relay_upstream_first_byte_seconds"]
    assert block == {"count": 0.0, "mean": None, "p50": None, "p95": None, "p99": None}


def test_a_counter_that_went_down_was_reset_and_counts_from_zero() -> None:
    restarted = BEFORE.replace("} 100\n", "} 7\n")
    rates = prom.interval(prom.parse(BEFORE), prom.parse(restarted), 1.0)["rates"]
    assert rates['relay_requests_total{route="/v1/chat/completions",status="200"}'] == 7.0


def test_a_histogram_reset_uses_the_new_counts() -> None:
    restarted = (
        BEFORE.replace('le="0.01"} 10', 'le="0.01"} 1')
        .replace('le="0.1"} 20', 'le="0.1"} 2')
        .replace('le="1.0"} 20', 'le="1.0"} 2')
        .replace('le="+Inf"} 20', 'le="+Inf"} 2')
    )
    block = prom.interval(prom.parse(BEFORE), prom.parse(restarted), 1.0)["quantiles"]
    assert block["relay_upstream_first_byte_seconds"]["count"] == 2


def test_first_snapshot_has_gauges_but_no_rates() -> None:
    values = prom.interval(None, prom.parse(BEFORE), 0.0)
    assert values["rates"] == {} and values["quantiles"] == {}
    assert values["gauges"]["relay_active_streams"] == 12


def test_bucket_quantile_edge_cases() -> None:
    bounds = np.array([0.5, 1.0, math.inf])
    # everything beyond the last finite bound: the highest finite bound is all that is known
    assert prom.bucket_quantile(0.9, bounds, np.array([0.0, 0.0, 5.0])) == 1.0
    # the first bucket starts at zero
    assert prom.bucket_quantile(0.5, bounds, np.array([4.0, 4.0, 4.0])) == pytest.approx(0.25)
    assert prom.bucket_quantile(0.5, bounds, np.zeros(3)) is None


def test_summaries_and_untyped_samples() -> None:
    text = """\
# TYPE rpc_seconds summary
rpc_seconds{quantile="0.5"} 0.2
rpc_seconds_sum 10
rpc_seconds_count 40
plain_value 3
"""
    later = text.replace("_count 40", "_count 50")
    values = prom.interval(prom.parse(text), prom.parse(later), 1.0)
    assert values["gauges"]['rpc_seconds{quantile="0.5"}'] == 0.2
    assert values["gauges"]["plain_value"] == 3
    assert values["rates"]["rpc_seconds_count"] == 10


@pytest.mark.parametrize(
    "body", ["<html><body>Not found</body></html>", '{"requests": 1}', "", "hello world\n"]
)
def test_anything_but_prometheus_text_is_refused_with_a_reason(body: str) -> None:
    with pytest.raises(prom.NotPrometheus, match=r"Prometheus|no metric"):
        prom.parse(body)


def test_a_histogram_with_an_unreadable_bucket_bound_is_refused() -> None:
    text = '# TYPE h histogram\nh_bucket{le="abc"} 1\nh_bucket{le="+Inf"} 1\nh_count 1\n'
    with pytest.raises(prom.NotPrometheus, match="bucket bound"):
        prom.parse(text)


def test_the_reason_for_a_huge_one_line_page_is_bounded() -> None:
    page = "<html>" + "x" * 75_000 + "</html>"  # one line: the parser's message quotes it all
    with pytest.raises(prom.NotPrometheus) as caught:
        prom.parse(page)
    reason = str(caught.value)
    assert reason.startswith("not Prometheus text (") and "<html>" in reason
    assert len(reason) <= prom.REASON_MAX + 30 and "…" in reason
