"""The mock's /mock/stats JSON → gauges and per-second rates, across a reset."""

from __future__ import annotations

import orjson
import pytest

from relaybench.scrape import mockstats


def _stats(**over: object) -> dict:
    base = {
        "requests": 10, "active_streams": 4, "active_requests": 5, "queued": 1,
        "completed": 6, "chunks": 300, "lateness_ms": {"p50": 0.1, "p99": 0.8, "max": 2.0},
        "faults_by_kind": {}, "since_reset_s": 5.0,
    }  # fmt: skip
    return {**base, **over}


def test_gauges_and_rates() -> None:
    values = mockstats.interval(_stats(), _stats(requests=14, chunks=500, since_reset_s=7.0), 2.0)
    assert values["gauges"]["active_streams"] == 4
    assert values["gauges"]["queued"] == 1
    assert values["gauges"]["lateness_p99_ms"] == 0.8
    assert values["rates"]["requests"] == 2.0
    assert values["rates"]["chunks"] == 100.0
    assert "since_reset_s" not in values["rates"]


def test_a_reset_between_two_polls_counts_from_the_reset() -> None:
    """Reset 0.5 s before the second poll: 20 chunks since then is 40 chunks/s, not 20/2 s."""
    after = _stats(requests=1, chunks=20, since_reset_s=0.5)
    values = mockstats.interval(_stats(), after, 2.0)
    assert values["rates"]["chunks"] == pytest.approx(40.0)


def test_not_the_mocks_json_is_refused() -> None:
    with pytest.raises(mockstats.NotMockStats, match="not JSON"):
        mockstats.parse(b"<html>")
    with pytest.raises(mockstats.NotMockStats, match="requests"):
        mockstats.parse(orjson.dumps({"status": "ok"}))
