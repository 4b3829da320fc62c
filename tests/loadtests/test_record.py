"""Record building from synthetic bytes: what counts as a token, lags, and the taxonomy."""

from __future__ import annotations

import orjson

from loadtests.record import RecordBuilder

MS = 1_000_000
T0 = 1_800_000_000_000_000_000  # a wall-clock origin (ns)


def chunk(content: str | None, stamp: int | None = None, **extra: object) -> bytes:
    delta = {} if content is None else {"content": content}
    obj: dict = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}
    if stamp is not None:
        obj["x_mock_emitted_ns"] = stamp
    obj.update(extra)
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def builder(stream: bool = True) -> RecordBuilder:
    return RecordBuilder(
        target="direct", worker="w1", seq=0, stream=stream, start_ns=T0, start_pc=0, max_tokens=9
    )


def test_role_chunk_is_not_the_first_token_and_lags_use_the_stamps() -> None:
    b = builder()
    b.headers(200, 2 * MS)
    role = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
    b.body(role, 3 * MS, T0 + 3 * MS)
    # emitted at +99.5 ms and +120 ms; arrived at +100 ms and +121.25 ms
    b.body(chunk("Xin", T0 + 99_500_000), 100 * MS, T0 + 100 * MS)
    b.body(chunk(" chào", T0 + 120 * MS), 121_250_000, T0 + 121_250_000)
    usage = {"completion_tokens": 3}
    b.body(
        b'data: {"choices":[],"usage":' + orjson.dumps(usage) + b"}\n\ndata: [DONE]\n\n",
        122 * MS,
        0,
    )
    b.finish(123 * MS, T0 + 123 * MS)
    rec = b.record()
    assert rec["ttft_ms"] == 100.0
    assert rec["chunks_ms"] == [100.0, 121.25]
    assert rec["lags_ms"] == [0.5, 1.25]
    assert rec["headers_ms"] == 2.0 and rec["e2e_ms"] == 123.0
    assert (rec["ok"], rec["error"], rec["status"]) == (True, None, 200)
    # usage wins for output_tokens; the chunk count is kept beside it (the mismatch is visible)
    assert (rec["output_tokens"], rec["usage_tokens"], rec["content_chunks"]) == (3, 3, 2)


def test_events_split_across_reads_and_several_per_read() -> None:
    b = builder()
    b.headers(200, 1 * MS)
    data = chunk("a", T0) + chunk("b", T0) + b"data: [DONE]\n\n"
    b.body(data[:7], 5 * MS, T0 + 5 * MS)
    b.body(data[7:40], 6 * MS, T0 + 6 * MS)
    b.body(data[40:], 7 * MS, T0 + 7 * MS)
    b.finish(8 * MS, T0 + 8 * MS)
    rec = b.record()
    assert rec["chunks_ms"] == [7.0, 7.0] and rec["ok"]
    assert rec["output_tokens"] == 2 and rec["usage_tokens"] is None


def test_no_stamps_means_null_lags() -> None:
    b = builder()
    b.headers(200, MS)
    b.body(chunk("hi") + b"data: [DONE]\n\n", 2 * MS, T0)
    b.finish(3 * MS, T0)
    assert b.record()["lags_ms"] is None


def test_truncated_without_done() -> None:
    b = builder()
    b.headers(200, MS)
    b.body(chunk("hi", T0), 2 * MS, T0 + 2 * MS)
    b.finish(3 * MS, T0 + 3 * MS)
    rec = b.record()
    assert (rec["ok"], rec["error"], rec["content_chunks"]) == (False, "truncated", 1)


def test_malformed_line_is_reported_and_the_rest_still_counted() -> None:
    b = builder()
    b.headers(200, MS)
    b.body(
        chunk("a", T0) + b"data: {not json\n\n" + chunk("b", T0) + b"data: [DONE]\n\n", 2 * MS, T0
    )
    b.finish(3 * MS, T0)
    rec = b.record()
    assert (rec["ok"], rec["error"], rec["content_chunks"]) == (False, "malformed", 2)


def test_stream_error_object() -> None:
    b = builder()
    b.headers(200, MS)
    b.body(b'data: {"error":{"message":"upstream overloaded"}}\n\ndata: [DONE]\n\n', 2 * MS, T0)
    b.finish(3 * MS, T0)
    rec = b.record()
    assert rec["error"] == "stream_error" and "overloaded" in rec["error_detail"]


def test_http_statuses_map_to_the_taxonomy_with_the_message() -> None:
    for status, kind in ((429, "http_429"), (401, "http_4xx"), (502, "http_5xx")):
        b = builder()
        b.headers(status, MS)
        b.body(b'{"error":{"message":"nope","type":"x"}}', 2 * MS, T0)
        b.finish(3 * MS, T0)
        rec = b.record()
        assert (rec["ok"], rec["error"], rec["status"]) == (False, kind, status)
        assert rec["error_detail"] == f"HTTP {status}: nope"
        assert rec["ttft_ms"] is None and rec["chunks_ms"] == []


def test_non_streaming_answer_is_its_own_first_token() -> None:
    b = builder(stream=False)
    b.headers(200, 400 * MS)
    body = {
        "object": "chat.completion",
        "choices": [{"message": {"role": "assistant", "content": "Dạ, đơn hàng đã giao."}}],
        "usage": {"completion_tokens": 7},
        "x_mock_emitted_ns": T0 + 4_000 * MS,
    }
    raw = orjson.dumps(body)
    b.body(raw[:10], 4_001 * MS, 0)
    b.body(raw[10:], 4_002 * MS, 0)
    b.finish(4_002 * MS, T0 + 4_002 * MS)
    rec = b.record()
    assert rec["ttft_ms"] == rec["e2e_ms"] == 4002.0
    assert rec["lags_ms"] == [2.0]
    assert (rec["ok"], rec["output_tokens"], rec["content_chunks"]) == (True, 7, 1)


def test_non_streaming_garbage_is_malformed() -> None:
    b = builder(stream=False)
    b.headers(200, MS)
    b.body(b"<html>oops</html>", 2 * MS, T0)
    b.finish(2 * MS, T0)
    assert b.record()["error"] == "malformed"


def test_transport_failure() -> None:
    b = builder()
    b.fail("connect", "ConnectionRefusedError", 4 * MS)
    rec = b.record()
    assert (rec["ok"], rec["error"], rec["e2e_ms"], rec["status"]) == (False, "connect", 4.0, None)


def test_a_usage_that_is_not_an_object_is_ignored_not_a_crash() -> None:
    b = builder()
    b.headers(200, 1 * MS)
    b.body(chunk("a") + b'data: {"choices":[],"usage":[1,2]}\n\ndata: [DONE]\n\n', 2 * MS, T0)
    b.finish(3 * MS, T0 + 3 * MS)
    rec = b.record()
    assert (rec["ok"], rec["usage_tokens"], rec["output_tokens"]) == (True, None, 1)


def test_json_of_the_wrong_shape_is_malformed_not_a_crash() -> None:
    for line in (b'{"choices":[{"delta":"x"}]}', b'{"choices":{"a":1}}'):
        b = builder()
        b.headers(200, 1 * MS)
        b.body(b"data: " + line + b"\n\ndata: [DONE]\n\n", 2 * MS, T0)
        b.finish(3 * MS, T0 + 3 * MS)
        # the shape carries no content: a complete stream with no tokens, not a crash
        assert b.record()["content_chunks"] == 0
    b = builder(stream=False)
    b.headers(200, 1 * MS)
    b.body(b'{"choices":[{"message":"not an object"}]}', 2 * MS, T0)
    b.finish(3 * MS, T0 + 3 * MS)
    assert b.record()["error"] == "malformed"
