"""``GET /mock/requests``: one entry per completion request, how it ended, what it sent."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from mock_upstream.history import ENDS, History

from .conftest import CHAT, ReadStream

CHAT_URL = "/v1/chat/completions"
FIELDS = {
    "n", "id", "request_id", "stream", "fault", "status", "arrived_ns", "first_byte_ns",
    "ended_ns", "chunks_sent", "bytes_sent", "end",
}  # fmt: skip


def _log(url: str, **query: Any) -> list[dict[str, Any]]:
    r = httpx.get(url + "/mock/requests", params=query, timeout=5)
    assert r.status_code == 200, r.text
    entries = r.json()["requests"]
    for entry in entries:
        assert set(entry) == FIELDS and entry["end"] in ENDS
    return entries


def _tagged(tag: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"hi [[mock {tag}]]"}]


def _wait_end(url: str, id_: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (entries := _log(url, id=id_)) and entries[0]["end"] == "in_progress":
        assert time.monotonic() < deadline, entries
        time.sleep(0.02)
    (entry,) = entries
    return entry


@pytest.fixture
def mock(start_server):
    return start_server("mock_upstream", "--ttft-ms", "10", "--itl-ms", "5", "--output-tokens", "6")


def test_a_completed_stream_is_logged_with_what_it_sent(mock, read_stream: ReadStream) -> None:
    body = {"messages": _tagged("id=s1"), "stream": True}
    result = read_stream(mock.url, body=body, headers={"X-Request-ID": "req-42"})
    (entry,) = _log(mock.url)
    stamps = [chunk["x_mock_emitted_ns"] for _, chunk in result.content_events()]
    assert entry["n"] == 1 and entry["id"] == "s1" and entry["request_id"] == "req-42"
    assert entry["stream"] is True and entry["fault"] is None and entry["status"] == 200
    assert entry["end"] == "completed"
    assert entry["chunks_sent"] == len(stamps) == 6
    assert entry["bytes_sent"] == len(result.raw)
    assert entry["arrived_ns"] == int(result.headers["x-mock-arrived-ns"])
    assert entry["first_byte_ns"] == stamps[0]  # the role+first chunk write carries the stamp
    assert stamps[-1] <= entry["ended_ns"]


def test_a_non_streaming_answer_and_an_error_are_logged(mock) -> None:
    with httpx.Client(timeout=5) as client:
        ok = client.post(mock.url + CHAT_URL, json={"messages": _tagged("id=whole")})
        bad = client.post(mock.url + CHAT_URL, content=b"{nope")
    whole, error = _log(mock.url)
    assert whole["stream"] is False and whole["status"] == 200 and whole["end"] == "completed"
    assert whole["bytes_sent"] == len(ok.content) and whole["chunks_sent"] == 0
    assert whole["first_byte_ns"] == ok.json()["x_mock_emitted_ns"]
    assert error["status"] == 400 and error["end"] == "error" and error["id"] is None
    assert error["bytes_sent"] == len(bad.content)


def test_a_client_that_leaves_is_logged_as_cancelled_when_the_mock_noticed(mock) -> None:
    body = {"messages": _tagged("id=gone itl-ms=50 output-tokens=100"), "stream": True}
    with (
        httpx.Client(timeout=5) as client,
        client.stream("POST", mock.url + CHAT_URL, json=body) as response,
    ):
        pieces = response.iter_raw()
        next(pieces)
        (live,) = _log(mock.url, id="gone")
        assert live["end"] == "in_progress" and live["ended_ns"] is None
        left = time.time_ns()
    entry = _wait_end(mock.url, "gone")
    assert entry["end"] == "cancelled"
    assert 0 < entry["chunks_sent"] < 100
    assert entry["ended_ns"] >= left  # when the mock saw the client go, not when it would end


def test_faults_are_logged_by_their_header_form(mock) -> None:
    url = mock.url + CHAT_URL
    with httpx.Client(timeout=5) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            body = {"messages": _tagged("id=cut fault=disconnect-after:2"), "stream": True}
            client.post(url, json=body)
        client.post(url, json={"messages": CHAT}, headers={"X-Mock-Fault": "status:429"})
    cut, status = _log(mock.url)
    assert (cut["fault"], cut["end"], cut["chunks_sent"]) == ("disconnect-after:2", "faulted", 2)
    assert (status["fault"], status["status"], status["end"]) == ("status:429", 429, "faulted")


def test_filters_by_id_and_since_and_reset_clears(mock) -> None:
    with httpx.Client(timeout=5) as client:
        for tag in ("id=a", "id=b", "id=a", ""):
            client.post(mock.url + CHAT_URL, json={"messages": _tagged(tag + " ttft-ms=0")})
    assert [e["n"] for e in _log(mock.url)] == [1, 2, 3, 4]
    assert [e["n"] for e in _log(mock.url, id="a")] == [1, 3]
    assert [e["n"] for e in _log(mock.url, since=2)] == [3, 4]
    assert [e["n"] for e in _log(mock.url, id="a", since=1)] == [3]
    assert httpx.post(mock.url + "/mock/reset").status_code == 200
    assert _log(mock.url) == []


@pytest.mark.parametrize(
    ("query", "words"), [({"since": "-1"}, "since"), ({"since": "x"}, "since"), ({"n": "1"}, "'n'")]
)
def test_bad_queries_are_400(mock_url: str, query: dict[str, str], words: str) -> None:
    r = httpx.get(mock_url + "/mock/requests", params=query)
    assert r.status_code == 400
    error = r.json()["error"]
    assert words in error["message"] and error["type"] == "invalid_request_error"


def test_the_ring_keeps_only_the_last_entries() -> None:
    history = History(size=3)
    for k in range(5):
        history.open(k, None)
    assert [e.n for e in history.select()] == [3, 4, 5]
    assert [e.n for e in history.select(since=4)] == [5]
