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

For proxies there are two more ways in. ``scan`` only finds block boundaries (a block ends at
a blank line) and returns their offsets in the bytes read, copying nothing in the common case:
a relay checks and forwards whole blocks without decoding them. ``feed_blocks`` builds on it
and also decodes each block, returning its exact bytes with its event. A decoder is used in one
way only: ``feed``, or ``scan``, or ``feed_blocks``.
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
        self.last_event_id: str | None = None
        self.comments = 0  # comment lines seen (keep-alives, for instance)
        # ``scan`` state: the bytes of the block under way, and how many of them are no line
        # content (a BOM at the start of the stream).
        self._held = b""
        self._lead = 0
        self._scan_cr = False  # the last block ended with a CR at the end of a read
        self._scan_started = False

    # -- public API -------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Consume ``chunk``; return the events it completed, in order."""
        return self._consume(chunk)

    def scan(self, chunk: bytes) -> tuple[bytes, list[int]]:
        """Find the blocks ``chunk`` completes, without decoding or copying them.

        Returns ``(buf, ends)``: ``buf`` is the bytes held from earlier reads followed by
        ``chunk`` (``chunk`` itself when nothing was held), ``ends`` the offsets in ``buf`` where
        each completed block ends (after its blank line). ``buf[ends[-1]:]`` (or all of ``buf``)
        is held for the next call. Boundaries follow the same line rules as ``feed``.
        """
        held = self._held
        buf = held + chunk if held else chunk
        lead = self._lead
        ends: list[int] = []
        if self._scan_cr:  # a CR ended the last block at the end of a read (nothing is held)
            self._scan_cr = False
            if buf[:1] == b"\n":  # the rest of that CRLF: a block of its own, sent at once
                ends.append(1)
                lead = 1
        if not self._scan_started:
            if len(buf) < 3 and _BOM.startswith(buf):
                self._held = buf
                return buf, []
            self._scan_started = True
            if buf.startswith(_BOM):
                lead = 3
        if b"\r" in buf:
            ends += self._scan_any(buf, lead)
        else:  # the common case: LF only, found at C speed
            pos = lead
            if len(held) <= lead:  # at a block's start: blank lines there are blocks
                while buf.startswith(b"\n", pos):
                    pos += 1
                    ends.append(pos)
            search = max(pos, len(held) - 1)
            while (at := buf.find(b"\n\n", search)) >= 0:
                pos = at + 2
                ends.append(pos)
                while buf.startswith(b"\n", pos):
                    pos += 1
                    ends.append(pos)
                search = pos
        if ends:
            last = ends[-1]
            self._held = buf[last:] if last < len(buf) else b""
            self._lead = 0
        else:
            self._held, self._lead = buf, lead
        return buf, ends

    def feed_blocks(self, chunk: bytes) -> list[tuple[bytes, ServerSentEvent | None]]:
        """Like ``feed``, but return every completed block with its exact bytes.

        A block ends at a blank line; its event is ``None`` when it held no data (a comment-only
        keep-alive, for instance). Concatenating all returned bytes plus ``pending_bytes()``
        gives back exactly what was fed.
        """
        buf, ends = self.scan(chunk)
        out: list[tuple[bytes, ServerSentEvent | None]] = []
        start = 0
        for end in ends:
            block = buf[start:end]
            events = self._consume(block)
            out.append((block, events[-1] if events else None))
            start = end
        return out

    def pending_bytes(self) -> bytes:
        """Bytes consumed but not yet part of a completed block (``scan``/``feed_blocks``)."""
        return self._held

    @property
    def has_partial_event(self) -> bool:
        """True when data lines or an unterminated line are waiting for their blank line."""
        return bool(self._data) or bool(self._buf) or bool(self._held[self._lead :])

    # -- internals --------------------------------------------------------------------------

    def _scan_any(self, buf: bytes, lead: int) -> list[int]:
        """Block ends in ``buf`` (line content from ``lead``) when CRs may end lines."""
        ends: list[int] = []
        line_start = lead
        for match in _EOL.finditer(buf, lead):
            start, end = match.span()
            if start == line_start:  # a blank line ends the block
                ends.append(end)
            line_start = end
        if ends and ends[-1] == len(buf) and buf[-1] == 0x0D:
            self._scan_cr = True  # a LF that opens the next read is part of this CR's CRLF
        return ends

    def _consume(self, chunk: bytes) -> list[ServerSentEvent]:
        out: list[ServerSentEvent] = []
        if not chunk:
            return out
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
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
                buf = buf[3:]
        if b"\r" in buf:
            lines = self._split_any(buf)
        else:  # the common case: LF only, split at C speed
            lines = buf.split(b"\n")
            self._buf = lines.pop()
        for line in lines:
            if line:
                self._field(line)
                continue
            event = self._dispatch()
            if event is not None:
                out.append(event)
        return out

    def _split_any(self, buf: bytes) -> list[bytes]:
        """Split on CRLF, CR or LF; return the complete lines."""
        lines: list[bytes] = []
        pos = 0
        for match in _EOL.finditer(buf):
            start, end = match.span()
            lines.append(buf[pos:start])
            pos = end
            if end == len(buf) and buf[start] == 0x0D:  # lone CR at the end of this chunk
                self._skip_lf = True
        self._buf = buf[pos:]
        return lines

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
