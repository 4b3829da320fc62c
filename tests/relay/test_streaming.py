"""The passthrough filter, sans-I/O: exact bytes out, usage found and stripped, breakage caught."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.errors import UpstreamBroken
from relay.streaming import MAX_EVENT_BYTES, StreamFilter

CONTENT = b'data: {"choices":[{"delta":{"content":"hi"}}],"usage":null}\n\n'
USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5}}\n\n'
USAGE_SPACED = (
    b'data: {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5}}\r\n\r\n'
)
DONE = b"data: [DONE]\n\n"


def feed_bytewise(stream_filter: StreamFilter, data: bytes) -> bytes:
    return b"".join(stream_filter.feed(data[i : i + 1]) for i in range(len(data)))


@pytest.mark.parametrize("usage", [USAGE, USAGE_SPACED])
def test_usage_is_counted_and_stripped_only_when_the_relay_asked(usage):
    stream = CONTENT + b": keep-alive\n\n" + CONTENT + usage + DONE
    stripped = StreamFilter(strip_usage=True)
    assert feed_bytewise(stripped, stream) == stream.replace(usage, b"")
    stripped.finish()
    assert stripped.usage == {"prompt_tokens": 3, "completion_tokens": 5}
    kept = StreamFilter(strip_usage=False)
    assert kept.feed(stream) == stream
    assert kept.usage == {"prompt_tokens": 3, "completion_tokens": 5}


def test_usage_null_on_content_chunks_is_not_the_usage_chunk():
    stream_filter = StreamFilter(strip_usage=True)
    assert stream_filter.feed(CONTENT) == CONTENT
    assert stream_filter.usage is None


def test_partial_block_is_held_until_complete():
    stream_filter = StreamFilter(strip_usage=True)
    assert stream_filter.feed(CONTENT[:10]) == b""
    assert stream_filter.feed(CONTENT[10:]) == CONTENT


@pytest.mark.parametrize(
    "bad",
    [
        b'data: {"id":"malformed","choices":[{"delta":\n\n',
        b"data: hello\n\n",
        b'data: {"choices":[],"usage":{"prompt_tokens":\n\ndata: 1}\n\n',
    ],
)
def test_malformed_data_raises(bad):
    with pytest.raises(UpstreamBroken) as info:
        StreamFilter(strip_usage=True).feed(CONTENT + bad)
    assert info.value.code == "upstream_malformed"
    # the good chunk that came in the same read still reaches the client, before the error
    assert info.value.forward == CONTENT


def test_a_stripped_usage_before_the_bad_block_is_not_forwarded():
    with pytest.raises(UpstreamBroken) as info:
        StreamFilter(strip_usage=True).feed(CONTENT + USAGE + b"data: hello\n\n")
    assert info.value.forward == CONTENT


@pytest.mark.parametrize("stream", [CONTENT, CONTENT + DONE[:-1], b"", CONTENT + b"data: {"])
def test_stream_without_done_or_with_a_torn_block_is_truncated(stream):
    stream_filter = StreamFilter(strip_usage=False)
    stream_filter.feed(stream)
    with pytest.raises(UpstreamBroken) as info:
        stream_filter.finish()
    assert info.value.code == "upstream_stream_truncated"


def test_complete_stream_finishes_cleanly():
    stream_filter = StreamFilter(strip_usage=False)
    assert stream_filter.feed(CONTENT + DONE) == CONTENT + DONE
    stream_filter.finish()


def test_a_read_that_ends_on_a_block_boundary_is_forwarded_without_a_copy():
    stream_filter = StreamFilter(strip_usage=True)
    read = CONTENT + b": keep-alive\n\n" + CONTENT
    assert stream_filter.feed(read) is read  # the very object read: checked in place
    assert stream_filter.feed(CONTENT + CONTENT[:5]) == CONTENT  # up to the last boundary


@settings(max_examples=200, deadline=None)
@given(
    eol=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    strip=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=20),
)
def test_any_chunking_forwards_the_same_bytes(eol, strip, cuts):
    def block(text: bytes) -> bytes:
        return text + eol + eol

    usage = block(b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5}}')
    content = block(b'data: {"choices":[{"delta":{"content":"h\xc3\xa9"}}]}')
    stream = content + block(b": ping") + content + usage + block(b"data: [DONE]")
    expected = stream.replace(usage, b"") if strip else stream
    stream_filter = StreamFilter(strip_usage=strip)
    out = b""
    last = 0
    for cut in [*sorted({c % (len(stream) + 1) for c in cuts}), len(stream)]:
        out += stream_filter.feed(stream[last:cut])
        last = cut
    stream_filter.finish()
    assert out == expected
    assert stream_filter.usage == {"prompt_tokens": 3, "completion_tokens": 5}


def test_an_event_that_never_ends_is_malformed_not_held_forever():
    stream_filter = StreamFilter(strip_usage=True)
    assert stream_filter.feed(b'data: {"x": "' + b"a" * (MAX_EVENT_BYTES // 2)) == b""
    with pytest.raises(UpstreamBroken) as info:
        stream_filter.feed(b"a" * (MAX_EVENT_BYTES // 2 + 100))
    assert info.value.code == "upstream_malformed"
