"""TTFT and inter-token spacing against the configured values (tolerances for a busy machine).

Emission stamps (``x_mock_emitted_ns``) are checked tightly against the schedule; arrival
times at the client, which include this test's own scheduling, more loosely.
"""

from __future__ import annotations

import itertools
import statistics

from .conftest import ReadStream

MS = 1_000_000


def test_ttft_and_itl_follow_the_configuration(start_server, read_stream: ReadStream) -> None:
    mock = start_server("mock_upstream", "--ttft-ms", "150", "--itl-ms", "30")
    result = read_stream(mock.url, headers={"X-Mock-Output-Tokens": "12"})
    content = result.content_events()
    assert len(content) == 12
    stamps = [chunk["x_mock_emitted_ns"] for _, chunk in content]
    arrivals = [arrived for arrived, _ in content]
    ttft_stamp = (stamps[0] - result.sent_ns) / MS
    ttft_arrival = (arrivals[0] - result.sent_ns) / MS
    assert 149 <= ttft_stamp <= 175, ttft_stamp
    assert 149 <= ttft_arrival <= 175, ttft_arrival
    gaps = [(b - a) / MS for a, b in itertools.pairwise(stamps)]
    assert 28 <= statistics.median(gaps) <= 34, gaps
    # absolute deadlines: chunk i is due at start + TTFT + i x ITL, whatever the jitter before it
    offsets = [(stamp - result.sent_ns) / MS - (150 + 30 * i) for i, stamp in enumerate(stamps)]
    assert all(-1.5 <= off <= 25 for off in offsets), offsets
    assert statistics.median(offsets) <= 8, offsets
    arrival_gaps = [(b - a) / MS for a, b in itertools.pairwise(arrivals)]
    assert 25 <= statistics.median(arrival_gaps) <= 37, arrival_gaps


def test_header_overrides_timing(mock_url: str, read_stream: ReadStream) -> None:
    result = read_stream(
        mock_url,
        headers={"X-Mock-TTFT-Ms": "120", "X-Mock-ITL-Ms": "15", "X-Mock-Output-Tokens": "5"},
    )
    content = result.content_events()
    stamps = [chunk["x_mock_emitted_ns"] for _, chunk in content]
    assert len(content) == 5
    assert 119 <= (stamps[0] - result.sent_ns) / MS <= 145
    assert 4 * 15 - 2 <= (stamps[-1] - stamps[0]) / MS <= 4 * 15 + 20


def test_seeded_latency_samples_repeat(start_server, read_stream: ReadStream) -> None:
    """With a jittered ITL, the same seed reproduces the same gaps (to timer precision)."""
    mock = start_server(
        "mock_upstream", "--ttft-ms", "20", "--itl-ms", "25", "--itl-dist", "uniform",
        "--itl-spread-ms", "20",
    )  # fmt: skip
    headers = {"X-Mock-Seed": "77", "X-Mock-Output-Tokens": "10"}

    def gaps() -> list[float]:
        stamps = [
            c["x_mock_emitted_ns"]
            for _, c in read_stream(mock.url, headers=headers).content_events()
        ]
        return [(b - a) / MS for a, b in itertools.pairwise(stamps)]

    a, b = gaps(), gaps()
    assert max(a) - min(a) > 10  # really jittered (uniform 5..45 ms)
    assert all(abs(x - y) <= 6 for x, y in zip(a, b, strict=True)), (a, b)
