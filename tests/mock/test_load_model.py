"""The load model: FIFO queue adds to TTFT, a full queue answers 429, ITL slows with streams."""

from __future__ import annotations

import itertools
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from .conftest import CHAT, ReadStream

MS = 1_000_000


def test_queue_wait_adds_to_ttft_in_fifo_order(start_server, read_stream: ReadStream) -> None:
    mock = start_server(
        "mock_upstream", "--ttft-ms", "150", "--itl-ms", "0", "--output-tokens", "1",
        "--max-concurrency", "1",
    )  # fmt: skip
    read_stream(mock.url, headers={"X-Mock-TTFT-Ms": "0"})  # warm the server up
    with ThreadPoolExecutor(3) as pool:
        futures = []
        for _ in range(3):
            futures.append(pool.submit(read_stream, mock.url))
            time.sleep(0.03)  # arrival order 0, 1, 2
        # the server numbers requests as they arrive (x-request-id): that is the queue order
        results = sorted((f.result() for f in futures), key=lambda r: r.headers["x-request-id"])
    firsts = [r.content_events()[0][1]["x_mock_emitted_ns"] for r in results]
    ttfts = [(first - r.sent_ns) / MS for first, r in zip(firsts, results, strict=True)]
    assert 148 <= ttfts[0] <= 200, ttfts
    assert all(ttft >= 160 for ttft in ttfts[1:]), ttfts  # they waited in the queue
    # one at a time, in arrival (FIFO) order: each starts its 150 ms TTFT when the one before ends
    spacing = [(b - a) / MS for a, b in itertools.pairwise(firsts)]
    assert all(148 <= gap <= 190 for gap in spacing), spacing


def test_full_queue_is_429_with_retry_after(start_server, get_stats) -> None:
    mock = start_server(
        "mock_upstream", "--ttft-ms", "400", "--output-tokens", "1", "--max-concurrency", "1",
        "--max-queue", "1", "--retry-after-s", "2",
    )  # fmt: skip

    def post() -> httpx.Response:
        return httpx.post(mock.url + "/v1/chat/completions", json={"messages": CHAT}, timeout=10)

    with ThreadPoolExecutor(3) as pool:
        running = [pool.submit(post) for _ in range(2)]
        time.sleep(0.15)
        rejected = post()
        assert [f.result().status_code for f in running] == [200, 200]
    assert rejected.status_code == 429
    assert rejected.headers["retry-after"] == "2"
    assert rejected.json()["error"]["code"] == "queue_full"
    stats = get_stats(mock.url)
    assert stats["rejected"] == 1 and stats["completed"] == 2


def test_itl_slows_down_as_streams_grow(start_server, read_stream: ReadStream) -> None:
    mock = start_server(
        "mock_upstream", "--ttft-ms", "10", "--itl-ms", "20", "--output-tokens", "15",
        "--slowdown-per-stream", "1.0", "--slowdown-after", "1",
    )  # fmt: skip

    def median_gap(result) -> float:
        stamps = [c["x_mock_emitted_ns"] for _, c in result.content_events()]
        return statistics.median((b - a) / MS for a, b in itertools.pairwise(stamps))

    alone = median_gap(read_stream(mock.url))
    with ThreadPoolExecutor(3) as pool:
        together = [median_gap(r) for r in pool.map(lambda _: read_stream(mock.url), range(3))]
    assert 18 <= alone <= 25, alone
    # three streams: ITL x (1 + 1.0 x (3 - 1)) = 60 ms while all three run
    assert all(50 <= gap <= 70 for gap in together), together
