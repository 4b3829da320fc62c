"""TTFT and inter-token spacing against the configured values (tolerances for a busy machine).

Emission stamps (``x_mock_emitted_ns``) are checked tightly against the schedule; arrival
times at the client, which include this test's own scheduling, more loosely.
"""

from __future__ import annotations

import itertools
import statistics

from .conftest import ReadStream

MS = 1_000_000


def _grid_offsets(stamps: list[int], itl_ms: float) -> list[float]:
    """How far (ms) each chunk is behind a grid ``base + i x ITL``; base = the least-late chunk.

    Chunks sent on absolute deadlines all sit near 0; sleeps summed after each send would drift
    later and later (chunk i behind by i x the average wake-up delay).
    """
    grid = [(stamp / MS) - itl_ms * i for i, stamp in enumerate(stamps)]
    base = min(grid)
    return [g - base for g in grid]


def test_ttft_and_itl_follow_the_configuration(start_server, read_stream: ReadStream) -> None:
    mock = start_server("mock_upstream", "--ttft-ms", "150", "--itl-ms", "30")
    read_stream(mock.url, headers={"X-Mock-Output-Tokens": "1", "X-Mock-TTFT-Ms": "0"})  # warm
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
    # absolute deadlines: the chunks sit on one grid spaced by the ITL, whatever the jitter
    offsets = _grid_offsets(stamps, 30)
    assert max(offsets) <= 20 and statistics.median(offsets) <= 5, offsets
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
    offsets = _grid_offsets(stamps, 15)
    assert max(offsets) <= 20 and statistics.median(offsets) <= 5, offsets


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
