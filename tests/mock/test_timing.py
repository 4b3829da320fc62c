"""TTFT and inter-token spacing against the configured values, judged by the mock's own clock.

Nothing here is an absolute wall-clock window: TTFT is the first chunk's ``x_mock_emitted_ns``
minus the request's arrival as the mock stamped it (``x-mock-arrived-ns``), spacing is the gaps
between stamps, and the allowed slack is the emission lateness the mock itself reports in
``/mock/stats`` (a busy machine makes the mock late; it must never make it early or drift).
Client arrival times are only compared with the stamps they carry.
"""

from __future__ import annotations

import random

from mock_upstream.content import VOCAB
from mock_upstream.latency import Distribution, make_plan

from .conftest import ReadStream, Stream, stats

MS = 1_000_000
CLOCK_MS = 1.0  # the stamp (time_ns) and the deadline (monotonic) are read back to back


def _stamps(result: Stream) -> list[int]:
    return [chunk["x_mock_emitted_ns"] for _, chunk in result.content_events()]


def _ttft_ms(result: Stream) -> float:
    """First content chunk's stamp minus the request's arrival, both on the mock's clock."""
    return (_stamps(result)[0] - int(result.headers["x-mock-arrived-ns"])) / MS


def _lateness(url: str) -> tuple[float, float]:
    """(min, max) emission lateness in ms over every write since the mock's last reset."""
    late = stats(url)["lateness_ms"]
    return late["min"], late["max"]


def _grid_offsets(stamps: list[int], itl_ms: float) -> list[float]:
    """How far (ms) each chunk is behind a grid ``base + i x ITL``; base = the least-late chunk.

    Chunks sent on absolute deadlines sit at their own lateness above the grid, so the spread of
    the offsets is at most the spread of the lateness; sleeps summed after each send would drift
    later and later (chunk i behind by i x the average wake-up delay) with small lateness each.
    """
    grid = [(stamp / MS) - itl_ms * i for i, stamp in enumerate(stamps)]
    base = min(grid)
    return [g - base for g in grid]


def test_ttft_and_itl_follow_the_configuration(start_server, read_stream: ReadStream) -> None:
    mock = start_server("mock_upstream", "--ttft-ms", "150", "--itl-ms", "30")
    read_stream(mock.url, headers={"X-Mock-Output-Tokens": "1", "X-Mock-TTFT-Ms": "0"})  # warm
    # 30 tokens: the stream spans 870 ms, longer than a pause of the test's reader
    result = read_stream(mock.url, headers={"X-Mock-Output-Tokens": "30"})
    content = result.content_events()
    assert len(content) == 30
    stamps = _stamps(result)
    late_min, late_max = _lateness(mock.url)
    ttft = _ttft_ms(result)
    # never before the TTFT; after it by at most the mock's own lateness plus reading the body
    assert 150 - CLOCK_MS <= ttft <= 150 + late_max + 0.1 * 150, (ttft, late_max)
    # absolute deadlines: the chunks sit on one grid spaced by the ITL, whatever the jitter (a
    # wrong ITL drifts off it by 29 x the error); no median of the gaps, which a paused mock's
    # catch-up (late chunks written one per tick) collapses
    offsets = _grid_offsets(stamps, 30)
    assert max(offsets) <= late_max - late_min + CLOCK_MS, (offsets, late_min, late_max)
    # each chunk reached the client when it was written, not held back to the end: the first
    # arrived before the mock had even stamped the last
    lags = [(arrived - stamp) / MS for (arrived, _), stamp in zip(content, stamps, strict=True)]
    assert min(lags) >= 0, lags  # one host, one clock: nothing arrives before it was written
    assert content[0][0] < stamps[-1], (lags, (stamps[-1] - stamps[0]) / MS)


def test_header_overrides_timing(start_server, read_stream: ReadStream) -> None:
    mock = start_server("mock_upstream", "--ttft-ms", "20", "--itl-ms", "2")
    result = read_stream(
        mock.url,
        headers={"X-Mock-TTFT-Ms": "120", "X-Mock-ITL-Ms": "15", "X-Mock-Output-Tokens": "5"},
    )
    stamps = _stamps(result)
    assert len(stamps) == 5
    late_min, late_max = _lateness(mock.url)
    ttft = _ttft_ms(result)
    assert 120 - CLOCK_MS <= ttft <= 120 + late_max + 0.1 * 120, (ttft, late_max)
    offsets = _grid_offsets(stamps, 15)
    assert max(offsets) <= late_max - late_min + CLOCK_MS, (offsets, late_min, late_max)


def test_seeded_latency_samples_repeat(start_server, read_stream: ReadStream) -> None:
    """With a jittered ITL, the same seed reproduces the same emission schedule: the plan's."""
    mock = start_server(
        "mock_upstream", "--ttft-ms", "20", "--itl-ms", "25", "--itl-dist", "uniform",
        "--itl-spread-ms", "20",
    )  # fmt: skip
    headers = {"X-Mock-Seed": "77", "X-Mock-Output-Tokens": "10"}
    plan = make_plan(
        random.Random(77),
        seed=77,
        ttft_ms=Distribution("constant", 20),
        itl_ms=Distribution("uniform", 25, 20),
        output_tokens=Distribution("constant", 100),
        vocab_size=len(VOCAB),
        fixed_output_tokens=10,
    )
    planned = [1000 * sum(plan.gaps_s[:i]) for i in range(10)]
    assert max(plan.gaps_s) - min(plan.gaps_s) > 0.010  # really jittered (uniform 5..45 ms)

    def offsets() -> list[float]:
        """Each chunk's stamp after the first's: the drawn gaps summed, plus lateness."""
        stamps = _stamps(read_stream(mock.url, headers=headers))
        return [(s - stamps[0]) / MS for s in stamps]

    a, b = offsets(), offsets()
    late_min, late_max = _lateness(mock.url)
    # offset i = the seeded sum of gaps + lateness_i - lateness_0 in each run
    tolerance = (late_max - late_min) + CLOCK_MS
    for run in (a, b):
        assert all(abs(x - p) <= tolerance for x, p in zip(run, planned, strict=True)), (
            run,
            planned,
            tolerance,
        )
