"""``--workers N``: processes sharing one port, answering ``/mock/*`` for all of them."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest

from mock_upstream.stats import Lateness

from .conftest import ReadStream

CHAT_URL = "/v1/chat/completions"


def _body(i: int, stream: bool) -> dict:
    return {"messages": [{"role": "user", "content": f"[[mock id=r{i}]]"}], "stream": stream}


@pytest.fixture
def workers(start_server):
    return start_server(
        "mock_upstream", "--workers", "2", "--ttft-ms", "0", "--itl-ms", "1", "--output-tokens", "4"
    )


def test_workers_share_the_port_and_their_stats_add_up(workers, read_stream: ReadStream) -> None:
    served = set()
    for i in range(40):  # a fresh connection each: the kernel spreads them over the workers
        if i % 2:
            result = read_stream(workers.url, body=_body(i, True))
            assert len(result.content_events()) == 4
            served.add(result.headers["x-request-id"].split("-")[2])
        else:
            answer = httpx.post(workers.url + CHAT_URL, json=_body(i, False))
            assert answer.status_code == 200
            served.add(answer.json()["id"].split("-")[2])
    assert served == {"w0", "w1"}  # both processes took requests
    for _ in range(6):  # whichever worker answers, it answers for both
        stats = httpx.get(workers.url + "/mock/stats").json()
        assert stats["workers"] == 2
        assert stats["requests"] == stats["completed"] == 40
        assert stats["chunks"] == 20 * 4
        assert stats["lateness_ms"]["count"] == 20 * 4 + 20  # each chunk, each whole answer
    log = httpx.get(workers.url + "/mock/requests").json()["requests"]
    assert [e["n"] for e in log] == list(range(1, 41))  # one arrival order across workers
    assert sorted(e["id"] for e in log) == sorted(f"r{i}" for i in range(40))
    assert [
        e["id"] for e in httpx.get(workers.url + "/mock/requests?id=r7").json()["requests"]
    ] == ["r7"]


def test_reset_clears_every_worker(workers) -> None:
    for i in range(10):
        httpx.post(workers.url + CHAT_URL, json=_body(i, False))
    assert httpx.post(workers.url + "/mock/reset").json() == {"reset": True}
    for _ in range(4):
        assert httpx.get(workers.url + "/mock/stats").json()["requests"] == 0
        assert httpx.get(workers.url + "/mock/requests").json()["requests"] == []
    httpx.post(workers.url + CHAT_URL, json=_body(0, False))
    assert [e["n"] for e in httpx.get(workers.url + "/mock/requests").json()["requests"]] == [1]


def test_a_worker_that_is_gone_makes_the_aggregate_a_clear_503_until_replaced(workers) -> None:
    assert workers.pid is not None
    (copy,) = psutil.Process(workers.pid).children()
    os.kill(copy.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while copy.is_running() and copy.status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    answer = httpx.get(workers.url + "/mock/stats")  # only the first process is left to answer
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert error["code"] == "worker_unavailable" and "worker 1 of 2" in error["message"]
    # the first process starts another copy in its place (same worker index): whole again
    deadline = time.monotonic() + 20
    while (answer := httpx.get(workers.url + "/mock/stats")).status_code != 200:
        assert time.monotonic() < deadline, "the dead worker was not replaced"
        time.sleep(0.1)
    assert answer.json()["workers"] == 2
    (fresh,) = psutil.Process(workers.pid).children()
    assert fresh.pid != copy.pid


def test_lateness_histograms_merge_like_one() -> None:
    a, b, both = Lateness(), Lateness(), Lateness()
    for i, late in enumerate([0.0001, 0.002, -0.0003, 0.05, 0.3, 12.0]):
        (a if i % 2 else b).add(late)
        both.add(late)
    merged = Lateness()
    merged.merge(a.raw())
    merged.merge(b.raw())
    merged.merge(Lateness().raw())  # an idle worker adds nothing
    assert merged.summary_ms() == both.summary_ms()


def test_a_long_log_comes_whole_across_workers(workers) -> None:
    """A worker's answer bigger than a stream reader's default 64 KiB line still arrives."""

    fresh = httpx.Limits(max_keepalive_connections=0)  # a new connection for every request
    with httpx.Client(limits=fresh, timeout=10) as client:

        def post(i: int) -> int:  # the workers log ~300 each (~75 KiB)
            return client.post(workers.url + CHAT_URL, json=_body(i, False)).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(post, range(600))) == {200}
    for _ in range(6):  # fresh connections again: some answers come from the other worker
        answer = httpx.get(workers.url + "/mock/requests", timeout=10)
        assert answer.status_code == 200, answer.text
        assert sorted(e["n"] for e in answer.json()["requests"]) == list(range(1, 601))
