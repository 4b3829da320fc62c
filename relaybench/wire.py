"""Writing a stream's chunks straight to its socket, past uvicorn's per-message ``send``.

``WireProtocol`` is uvicorn's httptools protocol plus one thing: each request's scope carries a
``Wire`` (``scope["extensions"]["relaybench.wire"]``) holding the connection's transport and
uvicorn's flow control. A server writes a body chunk with ``Wire.write`` from a callback (the
mock's emitter timer, the relay's upstream ``data_received``), in the same framing uvicorn's
``send`` uses (HTTP/1.1 chunked: an SSE response has no Content-Length), so the bytes on the
wire are the same. When uvicorn has paused writing (the client reads slowly) ``write`` refuses
and the stream's task ``await send(...)`` instead, which waits for the drain as before. The
response start and its last message always go through ``send``, so uvicorn's own state
(keep-alive, completion) stays right.

``tests/test_wire.py`` (under real uvicorn), ``tests/mock/test_stream.py`` (``direct_writes``
in ``/mock/stats``) and ``tests/relay/test_forward.py`` (``direct_writes`` in the relay's
``/health``) check that streams really take this path: they fail if uvicorn renames what this
module reads.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

KEY = "relaybench.wire"


class Wire:
    __slots__ = ("flow", "transport")

    def __init__(self, transport: asyncio.Transport, flow: FlowControl) -> None:
        self.transport = transport
        self.flow = flow

    def write(self, data: bytes) -> bool:
        """Write one body chunk now; False: writing is paused, use ``send`` (it drains first)."""
        if self.flow.write_paused:
            return False
        transport = self.transport
        if not transport.is_closing():  # like send(): writes for a client that left vanish
            transport.write(b"%x\r\n%b\r\n" % (len(data), data))
        return True


class WireProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the connection's ``Wire`` in every request scope."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        scope: dict[str, Any] = self.scope  # type: ignore[assignment]
        scope.setdefault("extensions", {})[KEY] = Wire(self.transport, self.flow)


def wire_of(scope: dict[str, Any]) -> Wire | None:
    """The request's Wire, or None under another server (every write then goes through send)."""
    extensions = scope.get("extensions")
    return extensions.get(KEY) if extensions else None
