"""Point 1 and 10: unbuffered byte-exact passthrough, both endpoints, usage handling."""

from __future__ import annotations

import socket
import time

import httpx
import orjson

from relay.keys import hash_key


def test_stream_headers_events_and_done(shared_relay, kit):
    server, key = shared_relay
    series = {"principal": f"key:{hash_key(key)[:16]}", "kind": "completion"}
    before = kit.metric(server, "relay_tokens_total", **series)
    with httpx.stream(
        "POST",
        server.url + "/v1/chat/completions",
        content=kit.chat(),
        headers={"Authorization": f"Bearer {key}"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        body = response.read()
    data = kit.sse_data(body)
    assert data[-1] == "[DONE]"
    chunks = [orjson.loads(d) for d in data[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    # The client did not ask for usage: the relay asked upstream, counted it and stripped it.
    assert all("usage" not in c or c["usage"] is None for c in chunks)
    assert all(c["choices"] for c in chunks)
    assert kit.metric(server, "relay_tokens_total", **series) - before == 8


def test_stream_keeps_usage_when_client_asks(shared_relay, kit):
    server, key = shared_relay
    body = kit.chat(stream_options={"include_usage": True})
    response = httpx.post(
        server.url + "/v1/chat/completions", content=body, headers={"X-API-Key": key}
    )
    data = kit.sse_data(response.content)
    usage = orjson.loads(data[-2])
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 8
    assert data[-1] == "[DONE]"


def test_chunks_arrive_as_produced_not_buffered(shared_relay, kit):
    """The client holds the first token before the mock has even written the last one.

    Judged against the mock's own stamps (``x_mock_emitted_ns``, Unix ns on this machine's
    clock): a relay that buffered the answer could only deliver the first token after the
    last was stamped. The last token is due 8 x 250 ms = 2 s after the first, so a client
    descheduled for up to ~2 s still sees the difference."""
    from relaybench.sse import SSEDecoder

    server, key = shared_relay
    decoder = SSEDecoder()
    received = []  # (time.time_ns() when the event was decoded, its data)
    sent_ns = time.time_ns()
    with httpx.stream(
        "POST",
        server.url + "/v1/chat/completions",
        content=kit.chat(),
        headers={
            "Authorization": f"Bearer {key}",
            "X-Mock-ITL-Ms": "250",
            "X-Mock-Output-Tokens": "9",
        },
    ) as response:
        for piece in response.iter_raw():
            now = time.time_ns()
            received += [(now, event.data) for event in decoder.feed(piece)]
    assert received[-1][1] == "[DONE]"
    chunks = [(at, orjson.loads(data)) for at, data in received[:-1]]
    stamps = [chunk["x_mock_emitted_ns"] for _, chunk in chunks]
    # The mock emits on deadlines (admission + TTFT + k x ITL): the last token is >= 2 s out.
    assert stamps == sorted(stamps) and stamps[-1] - sent_ns >= 8 * 250_000_000
    first_at = chunks[0][0]
    assert first_at < stamps[-1]  # delivered as produced, not after the whole answer


def test_non_stream_passthrough(shared_relay, kit):
    server, key = shared_relay
    response = httpx.post(
        server.url + "/v1/chat/completions",
        content=kit.chat(stream=False),
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    assert answer["object"] == "chat.completion"
    assert answer["usage"]["completion_tokens"] == 8
    assert "x_mock_emitted_ns" in answer  # the upstream's body, unchanged


def test_classic_endpoint_streams_and_forwards_only_its_fields(relay, make_key, raw_upstream):
    stream = [b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n', b"data: [DONE]\n\n"]
    upstream = raw_upstream(stream, pause_s=0)
    key = make_key()
    server = relay(upstream=upstream.url)
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.5,
        "max_tokens": 7,
        "tools": ["not forwarded"],
    }
    response = httpx.post(
        server.url + "/api/chat/stream", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.content == b"".join(stream)
    sent = orjson.loads(upstream.requests[0])
    assert sent == {
        "messages": body["messages"],
        "temperature": 0.5,
        "max_tokens": 7,
        "model": "gpt-4o-mini",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_byte_identical_with_utf8_split_across_chunks(relay, make_key, raw_upstream):
    """Multi-byte characters cut mid-sequence by the network arrive byte for byte."""
    text = "Xin chào 👩‍💻 한국어 データ"
    event = b'data: {"choices":[{"delta":{"content":"' + text.encode() + b'"}}]}\r\n\r\n'
    stream = event * 3 + b": comment\n\n" + b"data: [DONE]\n\n"
    # Cut inside the emoji (4-byte) and inside a Hangul syllable (3-byte), and every 7 bytes.
    emoji_at = stream.index("👩".encode()) + 2
    hangul_at = stream.index("한".encode()) + 1
    cuts = sorted({emoji_at, hangul_at, *range(7, len(stream), 7)})
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert any(p.decode("utf-8", "ignore").encode() != p for p in pieces)  # really split
    upstream = raw_upstream(pieces, pause_s=0.001)
    key = make_key()
    server = relay(upstream=upstream.url)
    body = orjson.dumps(
        {
            "messages": [{"role": "user", "content": "x"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    response = httpx.post(
        server.url + "/v1/chat/completions", content=body, headers={"X-API-Key": key}
    )
    assert response.status_code == 200
    assert response.content == stream


def read_chunked(port: int, request: bytes) -> list[bytes]:
    """Send ``request`` on a raw socket; the response's HTTP chunks, exactly as framed."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        data = b""
        while not data.endswith(b"\r\n0\r\n\r\n"):
            more = conn.recv(65536)
            assert more, data
            data += more
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower()
    chunks = []
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return chunks
        chunks.append(body[:size])
        assert body[size : size + 2] == b"\r\n"
        body = body[size + 2 :]


def test_one_client_write_per_upstream_read(relay, make_key, raw_upstream):
    one = b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n'
    two = b'data: {"choices":[{"delta":{"content":"b"}}]}\n\n'
    torn = b'data: {"choices":[{"delta":{"content":"c"}}]}\n\n'
    done = b"data: [DONE]\n\n"
    # Four upstream reads: one block; two blocks together; half a block; its rest and [DONE].
    reads = [one, two + one, torn[:20], torn[20:] + done]
    upstream = raw_upstream(reads, pause_s=0.05)
    key = make_key()
    server = relay(upstream=upstream.url)
    body = orjson.dumps({"messages": [{"role": "user", "content": "x"}], "stream": True})
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: relay\r\nx-api-key: %s\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        % (key.encode(), len(body), body)
    )
    chunks = read_chunked(int(server.url.rsplit(":", 1)[1]), request)
    # Never coalescing what arrived apart, never splitting what arrived together; the torn
    # block goes out whole with the read that completed it.
    assert chunks == [one, two + one, torn + done]
