"""The SSE passthrough filter (sans-I/O): upstream bytes in, the client's bytes out.

Every complete event block is forwarded with its exact bytes, so the client receives the
upstream stream byte for byte, multi-byte characters included. ``SSEDecoder.scan`` finds the
block boundaries without copying; the usual block, one ``data: `` line ending in LF, is then
checked in place (offsets into the bytes read), and any other shape is decoded by the same
decoder. What one upstream read completed goes out as one piece: the read itself when it
ended on a block boundary (no copy), else up to its last boundary. Three checks per block,
none of them a JSON parse:

- ``data: [DONE]`` marks a complete stream; a stream that ends without it is broken;
- a data payload must look like a JSON object (``{`` ... ``}``), or the upstream is malformed;
- the usage chunk (``"usage"`` and ``"choices":[]`` in its bytes) is the only block parsed, to
  count tokens; it is dropped when the relay, not the client, asked for usage.
"""

from __future__ import annotations

from typing import Any

import orjson

from relay.errors import UpstreamBroken
from relaybench.sse import SSEDecoder

_USAGE = b'"usage"'
_EMPTY_CHOICES = (b'"choices":[]', b'"choices": []')
_LF = 0x0A
# A block held this long without its blank line is no SSE event: the upstream is broken (and
# the relay does not hold unbounded memory for it).
MAX_EVENT_BYTES = 1024 * 1024


class StreamFilter:
    __slots__ = ("_blocks", "_drop_lf", "_lines", "done", "strip_usage", "usage")

    def __init__(self, strip_usage: bool) -> None:
        self._blocks = SSEDecoder()  # boundaries only (``scan``)
        self._lines = SSEDecoder()  # decodes the blocks that are not one plain data line
        self.strip_usage = strip_usage
        self.usage: dict[str, Any] | None = None
        self.done = False
        self._drop_lf = False  # a dropped block ended in CR: the LF of its CRLF comes next

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to send for ``chunk``: every block it completed, except a stripped usage."""
        buf, ends = self._blocks.scan(chunk)
        if not ends:
            if len(buf) > MAX_EVENT_BYTES:
                raise UpstreamBroken(
                    f"the upstream sent over {MAX_EVENT_BYTES} bytes without ending an event",
                    code="upstream_malformed",
                )
            return b""
        plain = b"\r" not in buf  # else lines may end in CR: decode every block
        dropped: list[tuple[int, int]] = []
        start = 0
        for end in ends:
            if self._drop_lf:
                self._drop_lf = False
                if buf[start] == _LF:
                    dropped.append((start, start + 1))
            try:
                drop = self._check(buf, start, end, plain)
            except UpstreamBroken as exc:
                exc.forward = _kept(buf, dropped, start)  # the good blocks before the bad one
                raise
            if drop:
                dropped.append((start, end))
                self._drop_lf = buf[end - 1] == 0x0D
            start = end
        return _kept(buf, dropped, ends[-1])

    def _check(self, buf: bytes, start: int, end: int, plain: bool) -> bool:
        """Check the block ``buf[start:end]``; True: drop it (the usage the relay asked for)."""
        if plain and buf.startswith(b"data: ", start) and buf.find(b"\n", start, end) == end - 2:
            return self._check_data(buf, start + 6, end - 2)
        events = self._lines.feed(buf[start:end])
        if not events:
            return False  # comments only, or an empty block
        data = events[-1].data.encode()
        return self._check_data(data, 0, len(data))

    def _check_data(self, buf: bytes, start: int, end: int) -> bool:
        """Check an event's data, ``buf[start:end]``, in place."""
        if end - start == 6 and buf.startswith(b"[DONE]", start):
            self.done = True
            return False
        if end <= start or buf[start] != 0x7B or buf[end - 1] != 0x7D:  # { ... }
            raise UpstreamBroken("the upstream sent malformed data", code="upstream_malformed")
        if buf.find(_USAGE, start, end) >= 0 and (
            buf.find(_EMPTY_CHOICES[0], start, end) >= 0
            or buf.find(_EMPTY_CHOICES[1], start, end) >= 0
        ):
            self._read_usage(buf[start:end])
            return self.strip_usage
        return False

    def _read_usage(self, data: bytes) -> None:
        try:
            usage = orjson.loads(data).get("usage")
        except (orjson.JSONDecodeError, AttributeError):
            raise UpstreamBroken(
                "the upstream sent a malformed usage chunk", code="upstream_malformed"
            ) from None
        self.usage = usage if isinstance(usage, dict) else None

    def finish(self) -> None:
        """The upstream body ended: it must have ended with ``[DONE]`` and a whole block."""
        if not self.done or self._blocks.pending_bytes().strip():
            raise UpstreamBroken(
                "the upstream stream ended before [DONE]", code="upstream_stream_truncated"
            )


def _kept(buf: bytes, dropped: list[tuple[int, int]], last: int) -> bytes:
    """``buf[:last]`` without the ``dropped`` ranges (no copy when nothing is dropped)."""
    if not dropped:
        return buf if last == len(buf) else buf[:last]
    parts = []
    pos = 0
    for cut_from, cut_to in dropped:
        parts.append(buf[pos:cut_from])
        pos = cut_to
    parts.append(buf[pos:last])
    return b"".join(parts)
