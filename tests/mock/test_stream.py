"""The stream's shape, content, stamps and options, read over real sockets."""

from __future__ import annotations

import asyncio
import re
import socket
import time

import httpx
import orjson

from mock_upstream.app import build_app
from mock_upstream.config import MockConfig
from mock_upstream.latency import Distribution
from relaybench.sse import SSEDecoder

from .conftest import CHAT, ReadStream, stats


def test_chat_stream_shape_with_usage(mock_url: str, read_stream: ReadStream) -> None:
    body = {"messages": CHAT, "stream": True, "stream_options": {"include_usage": True}}
    result = read_stream(mock_url, body)
    assert result.status == 200
    assert result.headers["content-type"].startswith("text/event-stream")
    assert result.events[-1][1] == "[DONE]"
    chunks = result.chunks
    first, *middle, final, usage = chunks
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert first["object"] == "chat.completion.chunk"
    assert all(len(c["choices"]) == 1 and c["choices"][0]["delta"]["content"] for c in middle)
    assert len(middle) == 12  # --output-tokens 12, one token per chunk
    assert final["choices"][0]["delta"] == {}
    assert final["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 12
    assert usage["usage"]["total_tokens"] == usage["usage"]["prompt_tokens"] + 12
    ids = {c["id"] for c in chunks}
    assert len(ids) == 1
    stamps = [c["x_mock_emitted_ns"] for c in chunks]
    assert all(isinstance(s, int) for s in stamps)
    assert stamps == sorted(stamps)
    assert result.sent_ns < stamps[0] <= result.events[0][0]  # stamped between send and arrival


def test_no_usage_chunk_without_include_usage(mock_url: str, read_stream: ReadStream) -> None:
    chunks = read_stream(mock_url).chunks
    assert all(c["choices"] for c in chunks)
    assert "usage" not in chunks[-1]


def test_max_tokens_cut_gives_finish_reason_length(mock_url: str, read_stream: ReadStream) -> None:
    for key in ("max_tokens", "max_completion_tokens"):
        body = {"messages": CHAT, "stream": True, key: 5}
        result = read_stream(mock_url, body)
        assert len(result.content_events()) == 5
        assert result.chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_text_is_multibyte_utf8(mock_url: str, read_stream: ReadStream) -> None:
    result = read_stream(mock_url, headers={"X-Mock-Output-Tokens": "300"})
    widths = {len(ch.encode()) for ch in result.text()}
    assert {1, 2, 3, 4} <= widths  # ASCII, Vietnamese, CJK, emoji
    assert max(result.raw) >= 0xF0  # raw 4-byte UTF-8 on the wire, not \u escapes


def test_same_seed_same_text_different_seed_differs(mock_url: str, read_stream: ReadStream) -> None:
    a = read_stream(mock_url, headers={"X-Mock-Seed": "123"})
    b = read_stream(mock_url, headers={"X-Mock-Seed": "123"})
    c = read_stream(mock_url, headers={"X-Mock-Seed": "124"})
    assert a.text() == b.text() != c.text()
    assert a.headers["x-mock-seed"] == "123"


def test_same_server_seed_replays_after_reset(get_stats, start_server) -> None:
    """Without X-Mock-Seed, the n-th request after a reset is the same for the same --seed."""

    def texts(url: str) -> list[str]:
        httpx.post(url + "/mock/reset", timeout=5)
        out = []
        for _ in range(3):
            r = httpx.post(url + "/v1/chat/completions", json={"messages": CHAT}, timeout=10)
            out.append(r.json()["choices"][0]["message"]["content"])
        return out

    flags = ("--ttft-ms", "0", "--itl-ms", "0", "--output-dist", "uniform")
    one = start_server("mock_upstream", *flags, "--output-spread", "20", "--seed", "9")
    first = texts(one.url)
    assert first == texts(one.url)
    assert len(set(first)) == 3
    other = start_server("mock_upstream", *flags, "--output-spread", "20", "--seed", "10")
    assert texts(other.url) != first


def test_tokens_per_chunk_batches(start_server, read_stream: ReadStream) -> None:
    mock = start_server(
        "mock_upstream", "--ttft-ms", "5", "--itl-ms", "1", "--tokens-per-chunk", "4"
    )
    batched = read_stream(mock.url, headers={"X-Mock-Output-Tokens": "10", "X-Mock-Seed": "5"})
    assert len(batched.content_events()) == 3  # 4 + 4 + 2 tokens
    single = start_server("mock_upstream", "--ttft-ms", "5", "--itl-ms", "1")
    plain = read_stream(single.url, headers={"X-Mock-Output-Tokens": "10", "X-Mock-Seed": "5"})
    assert batched.text() == plain.text()


def test_crlf_and_keepalive_decode(start_server, read_stream: ReadStream) -> None:
    mock = start_server(
        "mock_upstream", "--crlf", "--keepalive-ms", "20", "--ttft-ms", "100", "--itl-ms", "1"
    )
    result = read_stream(mock.url, headers={"X-Mock-Output-Tokens": "8"})
    assert b"\r\n\r\n" in result.raw and b"\n\n" not in result.raw.replace(b"\r\n", b"")
    assert b": keep-alive\r\n\r\n" in result.raw
    assert result.comments >= 3  # 100 ms of TTFT at one comment per 20 ms
    assert len(result.content_events()) == 8
    assert result.events[-1][1] == "[DONE]"
    # byte by byte, so CR/LF pairs and UTF-8 sequences are split everywhere
    decoder = SSEDecoder()
    events = [ev.data for i in range(len(result.raw)) for ev in decoder.feed(result.raw[i : i + 1])]
    assert events == [data for _, data in result.events]


def test_non_streaming_chat(mock_url: str) -> None:
    r = httpx.post(
        mock_url + "/v1/chat/completions",
        json={"messages": CHAT, "max_tokens": 4},
        headers={"X-Mock-Seed": "3"},
        timeout=10,
    )
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    assert choice["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 4
    assert isinstance(body["x_mock_emitted_ns"], int)


def test_non_streaming_waits_for_the_whole_generation(start_server) -> None:
    mock = start_server("mock_upstream", "--ttft-ms", "100", "--itl-ms", "20")
    r = httpx.post(
        mock.url + "/v1/chat/completions",
        json={"messages": CHAT},
        headers={"X-Mock-Output-Tokens": "6"},
        timeout=10,
    )
    assert r.status_code == 200
    assert r.elapsed.total_seconds() >= 0.100 + 5 * 0.020 - 0.002


def test_legacy_completions_stream_and_not(mock_url: str, read_stream: ReadStream) -> None:
    body = {"prompt": "Once upon", "stream": True, "stream_options": {"include_usage": True}}
    result = read_stream(mock_url, body, path="/v1/completions")
    chunks = result.chunks
    assert all(c["object"] == "text_completion" for c in chunks)
    assert chunks[0]["choices"][0]["text"]  # no role chunk in the legacy shape
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == 12
    assert result.events[-1][1] == "[DONE]"
    r = httpx.post(mock_url + "/v1/completions", json={"prompt": ["a", "b"]}, timeout=10)
    assert r.status_code == 200
    assert r.json()["object"] == "text_completion" and r.json()["choices"][0]["text"]


def test_models_health_stats_and_reset(start_server, read_stream: ReadStream, get_stats) -> None:
    mock = start_server("mock_upstream", "--ttft-ms", "1", "--itl-ms", "1", "--model", "m-1")
    assert httpx.get(mock.url + "/health").json() == {"status": "ok"}
    assert httpx.get(mock.url + "/v1/models").json()["data"][0]["id"] == "m-1"
    result = read_stream(mock.url, headers={"X-Mock-Output-Tokens": "3"})
    assert result.chunks[0]["model"] == "m-1"
    stats = get_stats(mock.url)
    assert stats["requests"] == 1 and stats["completed"] == 1 and stats["active_streams"] == 0
    assert stats["chunks"] == 3
    assert stats["lateness_ms"]["count"] == 3
    assert set(stats["lateness_ms"]) >= {"p50", "p99", "max"}
    assert httpx.post(mock.url + "/mock/reset").json() == {"reset": True}
    after = get_stats(mock.url)
    assert after["requests"] == after["completed"] == after["lateness_ms"]["count"] == 0
    assert after["lateness_ms"]["p99"] is None


def test_unknown_route_and_method_are_openai_errors(mock_url: str) -> None:
    r = httpx.get(mock_url + "/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = httpx.get(mock_url + "/v1/chat/completions")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_stamped_json_is_valid_for_every_chunk(mock_url: str, read_stream: ReadStream) -> None:
    result = read_stream(mock_url, headers={"X-Mock-Output-Tokens": "50"})
    for _, data in result.events[:-1]:
        assert "x_mock_emitted_ns" in orjson.loads(data)


_STAMPS = re.compile(rb'"(x_mock_emitted_ns|created)":\d+')


async def _in_process(body: dict, headers: dict[str, str]) -> bytes:
    """The same request straight into the ASGI app: no socket, so every write goes via send."""
    app = build_app(
        MockConfig(ttft_ms=Distribution("constant", 5), output_tokens=Distribution("constant", 30))
    )
    raw = orjson.dumps(body)
    messages = [{"type": "http.request", "body": raw, "more_body": False}]
    sent: list[bytes] = []
    finished = asyncio.Event()

    async def receive() -> dict:
        if messages:
            return messages.pop()
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.body":
            sent.append(message["body"])
            if not message.get("more_body"):
                finished.set()

    scope = {
        "type": "http", "method": "POST", "path": "/v1/chat/completions", "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }  # fmt: skip
    await app(scope, receive, send)
    return b"".join(sent)


def test_direct_writes_carry_the_same_bytes_as_send(start_server) -> None:
    """Chunks written straight to the socket equal what the ASGI send path produces."""
    mock = start_server("mock_upstream", "--ttft-ms", "5", "--output-tokens", "30")
    body = {"messages": CHAT, "stream": True, "stream_options": {"include_usage": True}}
    headers = {"X-Mock-Seed": "5", "X-Mock-ITL-Ms": "1"}
    wire = httpx.post(mock.url + "/v1/chat/completions", json=body, headers=headers).content
    stats = httpx.get(mock.url + "/mock/stats").json()
    assert stats["direct_writes"] == stats["chunks"] == 30  # they did take the direct path
    reference = asyncio.run(_in_process(body, headers))
    assert _STAMPS.sub(b"", wire) == _STAMPS.sub(b"", reference)
    assert wire.endswith(b"data: [DONE]\n\n")


def test_a_client_that_reads_late_gets_every_chunk_through_sends_drain(start_server) -> None:
    """Unread output fills the socket; uvicorn pauses writing and the stream waits, as before."""
    mock = start_server("mock_upstream", "--ttft-ms", "0", "--itl-ms", "0")
    host, port = mock.url.removeprefix("http://").split(":")
    request = orjson.dumps({"messages": CHAT, "stream": True})
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Mock-Output-Tokens: 20000\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(request), request)
        )
        # read nothing until the mock has had to hand a write to send (the socket was full),
        # by its own counts rather than after a fixed time a paused mock may sleep through
        deadline = time.monotonic() + 10
        while not (snapshot := stats(mock.url))["chunks"] > snapshot["direct_writes"] > 0:
            assert time.monotonic() < deadline, snapshot
            time.sleep(0.01)
        raw = bytearray()
        while not raw.endswith(b"0\r\n\r\n"):
            piece = sock.recv(1 << 20)
            assert piece, "the mock closed the stream"
            raw += piece
    assert raw.count(b'"delta":{"content":"') == 20000
    assert b"data: [DONE]" in raw
    counts = stats(mock.url)
    assert counts["chunks"] == 20000 and 0 < counts["direct_writes"] < 20000
