"""relaybench.wire under a real uvicorn: the scope carries a Wire, and what it writes arrives.

Both servers depend on it (the mock's emitter, the relay's upstream callback); this fails if
uvicorn renames the protocol attributes it reads (``transport``, ``flow``).
"""

from __future__ import annotations

import httpx

from relay.cli import http_protocol
from relay.config import parse_config
from relaybench.procs import ServerProcess
from relaybench.wire import WireProtocol

APP = """
import sys
from relaybench.serve import ServeOptions, serve
from relaybench.wire import WireProtocol, wire_of

async def app(scope, receive, send):
    wire = wire_of(scope)
    await send({"type": "http.response.start", "status": 200 if wire else 500, "headers": []})
    if wire is not None:
        for piece in (b"one ", b"two ", b"three"):
            assert wire.write(piece)  # an idle client's socket takes it: not paused
    await send({"type": "http.response.body", "body": b""})

sys.exit(serve(app, ServeOptions(port=0, http_protocol=WireProtocol)))
"""


def test_the_wire_writes_chunked_body_pieces_uvicorn_ends() -> None:
    with ServerProcess("wired", ["-c", APP]).start() as server, httpx.Client() as client:
        for _ in range(2):  # and the connection stays usable for the next request
            response = client.get(server.url)
            assert response.status_code == 200
            assert response.headers["transfer-encoding"] == "chunked"
            assert response.content == b"one two three"


def test_the_relay_serves_through_the_wire() -> None:
    assert issubclass(http_protocol(parse_config([], {})), WireProtocol)
