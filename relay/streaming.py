"""The SSE passthrough filter (sans-I/O): upstream bytes in, the client's bytes out.

Every complete event block is forwarded with its exact bytes (``SSEDecoder.feed_blocks``), so
the client receives the upstream stream byte for byte, multi-byte characters included. Three
things are checked per block, none of them a JSON parse:

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


class StreamFilter:
    __slots__ = ("_decoder", "_drop_lf", "done", "strip_usage", "usage")

    def __init__(self, strip_usage: bool) -> None:
        self._decoder = SSEDecoder()
        self.strip_usage = strip_usage
        self.usage: dict[str, Any] | None = None
        self.done = False
        self._drop_lf = False  # a dropped block ended in CR: the LF of its CRLF comes next

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to send for ``chunk``: every block it completed, except a stripped usage."""
        blocks = self._decoder.feed_blocks(chunk)
        if not blocks:
            return b""
        out: list[bytes] = []
        for raw, event in blocks:
            if self._drop_lf:
                self._drop_lf = False
                if raw[:1] == b"\n":
                    raw = raw[1:]
            if event is not None:
                data = event.data
                if data == "[DONE]":
                    self.done = True
                elif not (data[:1] == "{" and data[-1:] == "}"):
                    raise UpstreamBroken(
                        "the upstream sent malformed data", code="upstream_malformed"
                    )
                elif _USAGE in raw and (_EMPTY_CHOICES[0] in raw or _EMPTY_CHOICES[1] in raw):
                    self._read_usage(data)
                    if self.strip_usage:
                        self._drop_lf = raw[-1:] == b"\r"
                        continue
            out.append(raw)
        return b"".join(out)

    def _read_usage(self, data: str) -> None:
        try:
            usage = orjson.loads(data).get("usage")
        except (orjson.JSONDecodeError, AttributeError):
            raise UpstreamBroken(
                "the upstream sent a malformed usage chunk", code="upstream_malformed"
            ) from None
        self.usage = usage if isinstance(usage, dict) else None

    def finish(self) -> None:
        """The upstream body ended: it must have ended with ``[DONE]`` and a whole block."""
        if not self.done or self._decoder.pending_bytes().strip():
            raise UpstreamBroken(
                "the upstream stream ended before [DONE]", code="upstream_stream_truncated"
            )
