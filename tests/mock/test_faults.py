"""Every X-Mock-Fault form, over real sockets, and the seeded fault rates."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson
import pytest

from relaybench.sse import SSEDecoder

from .conftest import CHAT

STREAM = {"messages": CHAT, "stream": True}


def _read_until_error(url: str, fault: str, read_timeout: float = 5.0) -> tuple[list[str], str]:
    """Read a stream with ``fault``; return the event data and how it ended."""
    decoder = SSEDecoder()
    events: list[str] = []
    timeout = httpx.Timeout(5.0, read=read_timeout)
    headers = {"X-Mock-Fault": fault, "X-Mock-Output-Tokens": "10"}
    try:
        with (
            httpx.Client(timeout=timeout) as client,
            client.stream("POST", url + "/v1/chat/completions", json=STREAM, headers=headers) as r,
        ):
            assert r.status_code == 200
            for piece in r.iter_raw():
                events += [ev.data for ev in decoder.feed(piece)]
    except httpx.RemoteProtocolError:
        return events, "cut"
    except httpx.ReadTimeout:
        return events, "stalled"
    return events, "complete"


def _wait_idle(url: str, get_stats, timeout: float = 3.0) -> dict:
    deadline = time.monotonic() + timeout
    while (stats := get_stats(url))["active_requests"] and time.monotonic() < deadline:
        time.sleep(0.02)
    return stats


def _content_count(events: list[str]) -> int:
    n = 0
    for data in events:
        if data == "[DONE]":
            continue
        chunk = orjson.loads(data)
        if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
            n += 1
    return n


@pytest.fixture
def fault_mock(start_server):
    return start_server("mock_upstream", "--ttft-ms", "10", "--itl-ms", "5")


@pytest.mark.parametrize("code", [429, 500, 503, 401])
def test_status_fault(fault_mock, get_stats, code: int) -> None:
    r = httpx.post(
        fault_mock.url + "/v1/chat/completions",
        json=STREAM,
        headers={"X-Mock-Fault": f"status:{code}"},
    )
    assert r.status_code == code
    error = r.json()["error"]
    assert error["code"] == "mock_fault" and str(code) in error["message"]
    assert ("retry-after" in r.headers) == (code == 429)
    stats = get_stats(fault_mock.url)
    assert stats["faults"] == 1 and stats["faults_by_kind"] == {f"status:{code}": 1}


def test_disconnect_after_cuts_the_connection(fault_mock, get_stats) -> None:
    events, ending = _read_until_error(fault_mock.url, "disconnect-after:3")
    assert ending == "cut"
    assert _content_count(events) == 3
    assert "[DONE]" not in events
    assert get_stats(fault_mock.url)["faults_by_kind"] == {"disconnect": 1}
    # the server is fine afterwards
    assert httpx.get(fault_mock.url + "/health").status_code == 200


def test_disconnect_after_zero_cuts_before_any_chunk(fault_mock) -> None:
    events, ending = _read_until_error(fault_mock.url, "disconnect-after:0")
    assert (ending, events) == ("cut", [])


def test_stall_after_keeps_the_connection_open(fault_mock, get_stats) -> None:
    events, ending = _read_until_error(fault_mock.url, "stall-after:2", read_timeout=0.6)
    assert ending == "stalled"
    assert _content_count(events) == 2
    deadline = time.monotonic() + 3
    while (stats := get_stats(fault_mock.url))["cancelled"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stats["faults_by_kind"] == {"stall": 1}
    assert stats["cancelled"] == 1 and stats["active_streams"] == 0  # we gave up: it noticed


def test_malformed_after_sends_one_bad_line_then_continues(fault_mock, get_stats) -> None:
    events, ending = _read_until_error(fault_mock.url, "malformed-after:2")
    assert ending == "complete"
    bad = []
    for i, data in enumerate(events):
        try:
            orjson.loads(data)
        except orjson.JSONDecodeError:
            bad.append(i)
    assert events[-1] == "[DONE]"
    assert bad == [3, len(events) - 1]  # role, two contents, the bad line ... [DONE]
    good = [d for i, d in enumerate(events) if i not in bad]
    assert _content_count(good) == 10
    assert get_stats(fault_mock.url)["faults_by_kind"] == {"malformed": 1}


def test_non_streaming_faults(fault_mock) -> None:
    url = fault_mock.url + "/v1/chat/completions"
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        httpx.post(url, json={"messages": CHAT}, headers={"X-Mock-Fault": "disconnect-after:1"})
    r = httpx.post(url, json={"messages": CHAT}, headers={"X-Mock-Fault": "malformed-after:1"})
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            url,
            json={"messages": CHAT},
            headers={"X-Mock-Fault": "stall-after:1"},
            timeout=httpx.Timeout(5, read=0.3),
        )


@pytest.mark.parametrize(
    "value", ["boom", "status:200", "status:abc", "disconnect-after", "stall-after:-2", "cut:3"]
)
def test_unknown_fault_form_is_400_listing_valid_forms(mock_url: str, value: str) -> None:
    r = httpx.post(mock_url + "/v1/chat/completions", json=STREAM, headers={"X-Mock-Fault": value})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == "X-Mock-Fault"
    forms = ("status:CODE", "disconnect-after:N", "stall-after:N", "malformed-after:N")
    for form in (*forms, "no-done", "hang"):
        assert form in error["message"]


def test_seeded_fault_rates_are_reproducible_and_counted(start_server, get_stats) -> None:
    mock = start_server(
        "mock_upstream", "--ttft-ms", "0", "--itl-ms", "0", "--output-tokens", "3",
        "--seed", "4", "--fault-rate", "status:429=0.3", "--fault-rate", "status:503=0.2",
    )  # fmt: skip

    def statuses() -> list[int]:
        httpx.post(mock.url + "/mock/reset")
        with httpx.Client(timeout=5) as client:
            return [
                client.post(mock.url + "/v1/chat/completions", json={"messages": CHAT}).status_code
                for _ in range(60)
            ]

    first = statuses()
    stats = get_stats(mock.url)
    assert first == statuses()
    n429, n503 = first.count(429), first.count(503)
    assert 8 <= n429 <= 30 and 3 <= n503 <= 22 and first.count(200) == 60 - n429 - n503
    assert stats["faults_by_kind"] == {
        k: v for k, v in {"status:429": n429, "status:503": n503}.items() if v
    }
    assert stats["faults"] == n429 + n503


def test_every_request_ends_in_exactly_one_counter(start_server, get_stats) -> None:
    """requests == completed + cancelled + rejected + bad_requests + faulted, once all ended."""
    mock = start_server(
        "mock_upstream", "--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "5",
        "--max-concurrency", "1", "--max-queue", "0",
    )  # fmt: skip
    url = mock.url + "/v1/chat/completions"
    with httpx.Client(timeout=5) as client:
        client.post(url, json={"messages": CHAT})  # completed
        client.post(url, content=b"{")  # bad request
        client.post(url, json=STREAM, headers={"X-Mock-Fault": "status:500"})  # faulted
        client.post(url, json=STREAM, headers={"X-Mock-Fault": "malformed-after:1"})  # completed
        with pytest.raises(httpx.RemoteProtocolError):
            client.post(url, json=STREAM, headers={"X-Mock-Fault": "disconnect-after:2"})
        _read_until_error(mock.url, "stall-after:1", read_timeout=0.3)  # then cancelled
        _wait_idle(mock.url, get_stats)  # the mock has noticed and freed the slot
        headers = {"X-Mock-TTFT-Ms": "2000"}
        with client.stream("POST", url, json=STREAM, headers=headers) as holder:
            assert holder.status_code == 200
            rejected = client.post(url, json={"messages": CHAT})  # the only slot is taken
    assert rejected.status_code == 429
    stats = _wait_idle(mock.url, get_stats)
    ends = {k: stats[k] for k in ("completed", "cancelled", "rejected", "bad_requests", "faulted")}
    assert ends == {"completed": 2, "cancelled": 2, "rejected": 1, "bad_requests": 1, "faulted": 2}
    assert stats["requests"] == sum(ends.values()) == 8


def test_no_done_sends_everything_but_the_done_line_and_ends_cleanly(fault_mock, get_stats) -> None:
    body = {**STREAM, "stream_options": {"include_usage": True}}
    headers = {"X-Mock-Fault": "no-done", "X-Mock-Output-Tokens": "4"}
    decoder = SSEDecoder()
    with httpx.Client(timeout=5) as client:
        r = client.post(fault_mock.url + "/v1/chat/completions", json=body, headers=headers)
    events = [ev.data for ev in decoder.feed(r.content)]
    assert r.status_code == 200  # the response itself ended cleanly
    assert "[DONE]" not in events
    assert _content_count(events) == 4
    last = orjson.loads(events[-1])
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 4
    stats = get_stats(fault_mock.url)
    assert stats["faults_by_kind"] == {"no-done": 1}
    assert stats["faulted"] == 1 and stats["completed"] == 0


def test_hang_sends_nothing_until_the_client_leaves(fault_mock, get_stats) -> None:
    host, port = fault_mock.url.removeprefix("http://").split(":")
    body = orjson.dumps({"messages": [{"role": "user", "content": "[[mock fault=hang id=h]]"}]})
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(1)  # not even a status line
        (entry,) = httpx.get(fault_mock.url + "/mock/requests").json()["requests"]
        assert (entry["fault"], entry["status"], entry["end"]) == ("hang", 0, "in_progress")
        left = time.time_ns()
    deadline = time.monotonic() + 3
    while (stats := get_stats(fault_mock.url))["faulted"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stats["faults_by_kind"] == {"hang": 1} and stats["faulted"] == 1
    (entry,) = httpx.get(fault_mock.url + "/mock/requests").json()["requests"]
    assert entry["end"] == "faulted" and entry["ended_ns"] >= left and entry["bytes_sent"] == 0


def test_a_hanging_request_gets_a_503_when_the_mock_stops(start_server) -> None:
    mock = start_server("mock_upstream", "--shutdown-grace-s", "0.2")
    headers = {"X-Mock-Fault": "hang"}
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(
            httpx.post, mock.url + "/v1/chat/completions", json={"messages": CHAT},
            headers=headers, timeout=10,
        )  # fmt: skip
        deadline = time.monotonic() + 5
        while not httpx.get(mock.url + "/mock/requests").json()["requests"]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert mock.stop() == 0
        r = answer.result()
    assert r.status_code == 503 and r.json()["error"]["code"] == "shutting_down"
