"""The one SSE decoder: spec cases, and any chunking of real streams gives the same events."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from relaybench.sse import ServerSentEvent, SSEDecoder

TEXT = "Xin chào, bạn cần hỗ trợ gì? 你好 🛒 giá 199.000₫"


def stream(eol: str = "\n", comments: bool = False) -> bytes:
    """A realistic chat stream: role chunk, content chunks, usage, [DONE]."""
    parts = []
    if comments:
        parts.append(f": keep-alive{eol}{eol}")
    parts.append('data: {"choices":[{"delta":{"role":"assistant"}}]}' + eol + eol)
    for word in TEXT.split(" "):
        chunk = {"choices": [{"delta": {"content": word + " "}}]}
        parts.append("data: " + json.dumps(chunk, ensure_ascii=False) + eol + eol)
        if comments:
            parts.append(f": ping{eol}")
    parts.append(f"data: [DONE]{eol}{eol}")
    return "".join(parts).encode()


def decode_all(data: bytes, cuts: list[int]) -> tuple[list[ServerSentEvent], SSEDecoder]:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    last = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        events += decoder.feed(data[last:cut])
        last = cut
    return events, decoder


def content_of(events: list[ServerSentEvent]) -> str:
    out = []
    for event in events:
        if event.data == "[DONE]":
            continue
        for choice in json.loads(event.data)["choices"]:
            out.append(choice["delta"].get("content", ""))
    return "".join(out)


def test_whole_stream_decodes_to_text() -> None:
    events, decoder = decode_all(stream(), [])
    assert events[-1].data == "[DONE]"
    assert content_of(events).strip() == TEXT
    assert not decoder.has_partial_event


@settings(max_examples=300, deadline=None)
@given(
    eol=st.sampled_from(["\n", "\r\n", "\r"]),
    comments=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=40),
)
def test_any_split_gives_same_events(eol: str, comments: bool, cuts: list[int]) -> None:
    data = stream(eol, comments)
    expected, _ = decode_all(data, [])
    got, decoder = decode_all(data, [c % (len(data) + 1) for c in cuts])
    assert got == expected
    assert content_of(got).strip() == TEXT
    assert decoder.comments == expected_comments(comments)


def expected_comments(comments: bool) -> int:
    return 1 + len(TEXT.split(" ")) if comments else 0


def test_byte_by_byte_splits_multibyte_characters() -> None:
    data = stream("\r\n")
    decoder = SSEDecoder()
    events = [e for i in range(len(data)) for e in decoder.feed(data[i : i + 1])]
    assert content_of(events).strip() == TEXT


def test_multiline_data_and_fields() -> None:
    data = b"event: update\nid: 7\nretry: 1500\ndata: first\ndata:second\ndata\n\n"
    (event,) = SSEDecoder().feed(data)
    assert event == ServerSentEvent("first\nsecond\n", "update", "7", 1500)


def test_comment_only_and_empty_blocks_dispatch_nothing() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b": keep-alive\n\n\n\nevent: x\n\n") == []
    assert decoder.comments == 1


def test_bom_is_dropped_even_when_split() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"\xef\xbb") + decoder.feed(b"\xbfdata: a\n\n")
    assert [e.data for e in events] == ["a"]


def test_cr_at_chunk_end_dispatches_at_once() -> None:
    decoder = SSEDecoder()
    assert [e.data for e in decoder.feed(b"data: a\r\r")] == ["a"]
    assert [e.data for e in decoder.feed(b"\ndata: b\r\n\r\n")] == ["b"]


def test_unterminated_event_is_pending_not_dispatched() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"partial": tr') == []
    assert decoder.has_partial_event
    assert decoder.feed(b"ue}\n") == []
    assert decoder.has_partial_event


@settings(max_examples=200, deadline=None)
@given(
    eol=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=30),
)
def test_blocks_reassemble_to_the_exact_bytes(eol: str, cuts: list[int]) -> None:
    data = stream(eol, comments=True)
    decoder = SSEDecoder()
    raw = b""
    events = []
    last = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        for block, event in decoder.feed_blocks(data[last:cut]):
            raw += block
            if event is not None:
                events.append(event)
        last = cut
    assert raw + decoder.pending_bytes() == data
    assert events == decode_all(data, [])[0]


PIECES = [
    b"data: x",
    b"data:{}",
    b": c",
    b"event: e",
    b"id: 1",
    b"\n",
    b"\r",
    b"\r\n",
    b" ",
    "é".encode(),
]


@settings(max_examples=400, deadline=None)
@given(
    bom=st.booleans(),
    parts=st.lists(st.sampled_from(PIECES), max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
)
def test_scan_finds_the_blocks_the_decoder_sees_under_any_chunking(bom, parts, cuts):
    data = (b"\xef\xbb\xbf" if bom else b"") + b"".join(parts)
    decoder = SSEDecoder()
    blocks: list[bytes] = []
    last = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        buf, ends = decoder.scan(data[last:cut])
        start = 0
        for end in ends:
            blocks.append(buf[start:end])
            start = end
        assert buf[start:] == decoder.pending_bytes()
        last = cut
    assert b"".join(blocks) + decoder.pending_bytes() == data
    # Decoding the blocks one by one gives exactly the events of the whole stream: every
    # blank line was found, none was invented, and the held tail completes no event.
    replay = SSEDecoder()
    assert [event for block in blocks for event in replay.feed(block)] == SSEDecoder().feed(data)
