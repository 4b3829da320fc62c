"""A client that reads slowly: the relay stops writing when its socket is full and loses nothing.

The fast path writes each upstream read to the client's socket from the upstream connection's
callback (``relay.forward``); when uvicorn has paused writing, the bytes are kept and sent by
the stream's task once the socket drains, and reading the upstream waits meanwhile.
"""

from __future__ import annotations

import socket
import time

import orjson

from .conftest import chat

CHAT = "/v1/chat/completions"

EVENTS = 400
DATA = b"x" * 16_000  # 400 x 16 kB: far more than the sockets on the way hold


def _event(i: int) -> bytes:
    delta = {"choices": [{"index": 0, "delta": {"content": f"{i:04d}" + DATA.decode()}}]}
    return b"data: " + orjson.dumps(delta) + b"\n\n"


def _read_chunked(sock: socket.socket) -> bytes:
    """The whole chunked response body (the head dropped), read until the last chunk."""
    data = bytearray()
    while not data.endswith(b"0\r\n\r\n"):
        piece = sock.recv(1 << 20)
        assert piece, "the relay closed the connection before the end"
        data += piece
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    out, pos = [], 0
    while True:
        line_end = body.index(b"\r\n", pos)
        size = int(body[pos:line_end], 16)
        if size == 0:
            return b"".join(out)
        out.append(body[line_end + 2 : line_end + 2 + size])
        pos = line_end + 2 + size + 2


def test_a_client_that_stops_reading_gets_every_byte_in_order(relay, raw_upstream) -> None:
    stream = [_event(i) for i in range(EVENTS)] + [b"data: [DONE]\n\n"]
    upstream = raw_upstream(stream, pause_s=0)
    server = relay("--auth", "off", upstream=upstream.url, env={"RELAY_ANON_PLAN": "unlimited"})
    host, port = server.url.removeprefix("http://").split(":")
    body = chat()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # before connect: the window
        sock.settimeout(10)
        sock.connect((host, int(port)))
        sock.sendall(
            b"POST %s HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (CHAT.encode(), len(body), body)
        )
        time.sleep(1.0)  # not reading: the relay fills the socket and must wait for it
        got = _read_chunked(sock)
    assert got == b"".join(stream)  # every byte, in order, nothing doubled
