"""The load model: FIFO queue adds to TTFT, a full queue answers 429, ITL slows with streams."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from .conftest import CHAT, ReadStream, stats

MS = 1_000_000
CLOCK_MS = 1.0  # the stamp (time_ns) and the deadline (monotonic) are read back to back


def test_queue_wait_adds_to_ttft_in_fifo_order(start_server, read_stream: ReadStream) -> None:
    # a TTFT long enough that all three have arrived before the first one's chunk, even when
    # the test is paused for half a second between them
    mock = start_server(
        "mock_upstream", "--ttft-ms", "1000", "--itl-ms", "0", "--output-tokens", "1",
        "--max-concurrency", "1",
    )  # fmt: skip
    read_stream(mock.url, headers={"X-Mock-TTFT-Ms": "0"})  # warm the server up
    with ThreadPoolExecutor(3) as pool:
        futures = []
        for i in range(3):
            futures.append(pool.submit(read_stream, mock.url))
            _wait_for(mock.url, lambda s, n=2 + i: s["requests"] >= n)  # arrival order 0, 1, 2
        # the server numbers requests as they arrive (x-request-id): that is the queue order
        results = sorted((f.result() for f in futures), key=lambda r: r.headers["x-request-id"])
    firsts = [r.content_events()[0][1]["x_mock_emitted_ns"] / MS for r in results]
    arrived = [int(r.headers["x-mock-arrived-ns"]) / MS for r in results]
    slack = stats(mock.url)["lateness_ms"]["max"] + 0.1 * 1000  # the mock's own lateness
    assert all(a < f for a, f in zip(arrived[1:], firsts, strict=False)), (arrived, firsts)
    # one at a time, in FIFO order: each one's TTFT starts when it arrived or when the one
    # before it ended (its one chunk), whichever is later; a queued request's TTFT includes the wait
    starts = [arrived[0]] + [max(a, f) for a, f in zip(arrived[1:], firsts, strict=False)]
    ttfts = [f - s for f, s in zip(firsts, starts, strict=True)]
    assert all(1000 - 1 <= ttft <= 1000 + slack for ttft in ttfts), (ttfts, slack)
    waits = [s - a for s, a in zip(starts, arrived, strict=True)]
    assert all(wait > 0 for wait in waits[1:]), waits  # they waited in the queue


def test_full_queue_is_429_with_retry_after(start_server, get_stats) -> None:
    # a long TTFT: one running and one queued lasts 1.5 s, past a pause of the test
    mock = start_server(
        "mock_upstream", "--ttft-ms", "1500", "--output-tokens", "1", "--max-concurrency", "1",
        "--max-queue", "1", "--retry-after-s", "2",
    )  # fmt: skip

    def post() -> httpx.Response:
        return httpx.post(mock.url + "/v1/chat/completions", json={"messages": CHAT}, timeout=10)

    with ThreadPoolExecutor(3) as pool:
        running = [pool.submit(post) for _ in range(2)]
        _wait_for(mock.url, lambda s: s["active_requests"] == 1 and s["queued"] == 1)
        rejected = post()
        assert [f.result().status_code for f in running] == [200, 200]
    assert rejected.status_code == 429
    assert rejected.headers["retry-after"] == "2"
    assert rejected.json()["error"]["code"] == "queue_full"
    counts = get_stats(mock.url)
    assert counts["rejected"] == 1 and counts["completed"] == 2


def test_itl_slows_down_as_streams_grow(start_server, read_stream: ReadStream) -> None:
    """Spacing judged on the mock's deadline grid (admission + TTFT + i x ITL) with the mock's
    own lateness as the tolerance: a paused mock catches up with short gaps, which a median of
    the gaps would take for a faster ITL."""
    # a long TTFT so that all three streams are admitted before any gap is drawn
    mock = start_server(
        "mock_upstream", "--ttft-ms", "1500", "--itl-ms", "20", "--output-tokens", "15",
        "--slowdown-per-stream", "1.0", "--slowdown-after", "1",
    )  # fmt: skip

    def grid_offsets(result, itl_ms: float) -> list[float]:
        """How far (ms) each chunk is behind a grid ``base + i x ITL``; base = the least late."""
        stamps = [c["x_mock_emitted_ns"] / MS for _, c in result.content_events()]
        assert len(stamps) == 15
        grid = [stamp - itl_ms * i for i, stamp in enumerate(stamps)]
        return [g - min(grid) for g in grid]

    alone = read_stream(mock.url, headers={"X-Mock-TTFT-Ms": "10"})
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: read_stream(mock.url), range(3)))
    first = min(r.content_events()[0][1]["x_mock_emitted_ns"] for r in results)
    assert all(int(r.headers["x-mock-arrived-ns"]) < first for r in results)  # all three ran
    late = stats(mock.url)["lateness_ms"]
    tolerance = late["max"] - late["min"] + CLOCK_MS  # each chunk sits its lateness off its grid
    offsets = grid_offsets(alone, 20)
    assert max(offsets) <= tolerance, (offsets, late)
    # three streams: ITL x (1 + 1.0 x (3 - 1)) = 60 ms while all three run
    for result in results:
        offsets = grid_offsets(result, 60)
        assert max(offsets) <= tolerance, (offsets, late)


def _wait_for(url: str, condition: Callable[[dict[str, Any]], bool]) -> None:
    """Poll ``/mock/stats`` until ``condition`` holds (bounded: 10 s)."""
    deadline = time.monotonic() + 10
    while not condition(snapshot := stats(url)):
        assert time.monotonic() < deadline, snapshot
        time.sleep(0.01)
