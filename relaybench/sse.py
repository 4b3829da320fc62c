"""The project's one Server-Sent Events decoder: sans-I/O, fed bytes chunk by chunk.

Every part that reads SSE (the relay spotting the usage chunk, the load generator timing
tokens, the tests) uses this decoder, so there is exactly one interpretation of the wire format.

It follows the WHATWG event-stream rules:

- lines end with CRLF, LF or a lone CR; a CR at the very end of a chunk ends its line at
  once (no waiting for the next chunk), and an LF that starts the next chunk is then skipped;
- ``data`` lines of one event are joined with ``\\n``; an empty line dispatches the event;
- lines starting with ``:`` are comments (counted, never dispatched);
- a leading UTF-8 BOM is dropped.

Bytes are split into lines *before* UTF-8 decoding. CR and LF never occur inside a multi-byte
UTF-8 sequence, so a character split across two chunks is simply held in the line buffer until
its line completes: no incremental text decoder is needed, and no character is ever broken.

With ``feed_blocks`` the decoder also returns the exact bytes of each block (everything consumed
up to and including the blank line that ends it), so a proxy can forward or drop whole events
while keeping the byte stream otherwise identical.
"""

from __future__ import annotations

import re

__all__ = ["SSEDecoder", "ServerSentEvent"]

_EOL = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"


class ServerSentEvent:
    """One dispatched event. ``data`` is the joined data lines (never ``None``)."""

    __slots__ = ("data", "event", "id", "retry")

    def __init__(
        self, data: str, event: str = "message", id: str | None = None, retry: int | None = None
    ) -> None:
        self.data = data
        self.event = event
        self.id = id
        self.retry = retry

    def __repr__(self) -> str:
        return f"ServerSentEvent(data={self.data!r}, event={self.event!r}, id={self.id!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServerSentEvent):
            return NotImplemented
        return (self.data, self.event, self.id, self.retry) == (
            other.data,
            other.event,
            other.id,
            other.retry,
        )


class SSEDecoder:
    """Incremental event-stream decoder. Feed bytes; get events back as they complete."""

    def __init__(self) -> None:
        self._buf = b""  # bytes of the current, unterminated line
        self._skip_lf = False  # the previous chunk ended with CR: a leading LF belongs to it
        self._bom_checked = False
        self._data: list[str] = []
        self._event = ""
        self._retry: int | None = None
        self._raw = bytearray()  # bytes consumed since the last block boundary
        self.last_event_id: str | None = None
        self.comments = 0  # comment lines seen (keep-alives, for instance)

    # -- public API -------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Consume ``chunk``; return the events it completed, in order."""
        return self._consume(chunk, keep_raw=False)  # type: ignore[return-value]

    def feed_blocks(self, chunk: bytes) -> list[tuple[bytes, ServerSentEvent | None]]:
        """Like ``feed``, but return every completed block with its exact bytes.

        A block ends at a blank line; its event is ``None`` when it held no data (a comment-only
        keep-alive, for instance). Concatenating all returned bytes plus ``pending_bytes()``
        gives back exactly what was fed.
        """
        return self._consume(chunk, keep_raw=True)

    def pending_bytes(self) -> bytes:
        """Bytes consumed but not yet part of a completed block (``feed_blocks`` mode)."""
        return bytes(self._raw) + self._buf

    @property
    def has_partial_event(self) -> bool:
        """True when data lines or an unterminated line are waiting for their blank line."""
        return bool(self._data) or bool(self._buf)

    # -- internals --------------------------------------------------------------------------

    def _consume(self, chunk: bytes, *, keep_raw: bool) -> list:
        """Events (``keep_raw`` false) or ``(bytes, event | None)`` blocks (``keep_raw`` true)."""
        out: list = []
        if not chunk:
            return out
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                if keep_raw:
                    self._raw += b"\n"
                chunk = chunk[1:]
                if not chunk:
                    return out
        buf = self._buf + chunk if self._buf else chunk
        if not self._bom_checked:
            if len(buf) < 3 and _BOM.startswith(buf):
                self._buf = buf
                return out
            self._bom_checked = True
            if buf.startswith(_BOM):
                if keep_raw:
                    self._raw += _BOM
                buf = buf[3:]
        if b"\r" in buf:
            lines, ends = self._split_any(buf)
        else:  # the common case: LF only, split at C speed
            lines = buf.split(b"\n")
            self._buf = lines.pop()
            ends = None
        offset = 0
        for i, line in enumerate(lines):
            if keep_raw:
                end = ends[i] if ends is not None else offset + len(line) + 1
                self._raw += buf[offset:end]
                offset = end
            if line:
                self._field(line)
                continue
            event = self._dispatch()
            if keep_raw:
                out.append((bytes(self._raw), event))
                self._raw.clear()
            elif event is not None:
                out.append(event)
        return out

    def _split_any(self, buf: bytes) -> tuple[list[bytes], list[int]]:
        """Split on CRLF, CR or LF; return complete lines and where each terminator ends."""
        lines: list[bytes] = []
        ends: list[int] = []
        pos = 0
        for match in _EOL.finditer(buf):
            start, end = match.span()
            lines.append(buf[pos:start])
            ends.append(end)
            pos = end
            if end == len(buf) and buf[start] == 0x0D:  # lone CR at the end of this chunk
                self._skip_lf = True
        self._buf = buf[pos:]
        return lines, ends

    def _field(self, line: bytes) -> None:
        if line.startswith(b"data: "):  # the hot path: one data line per event
            self._data.append(line[6:].decode("utf-8", errors="replace"))
            return
        if line[0] == 0x3A:  # ':' comment
            self.comments += 1
            return
        text = line.decode("utf-8", errors="replace")
        name, sep, value = text.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\x00" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)

    def _dispatch(self) -> ServerSentEvent | None:
        data, self._data = self._data, []
        event_type, self._event = self._event, ""
        retry, self._retry = self._retry, None
        if not data:
            return None
        return ServerSentEvent("\n".join(data), event_type or "message", self.last_event_id, retry)
