"""ASGI request-body reading shared by both servers (the mock and the relay).

BodyError                  the request body cannot be accepted (each server maps it to its
├── BodyTooLarge           own OpenAI-shaped 4xx error)
└── BadContentLength
ClientDisconnected         the client left before its body was read: an event, not an error
"""

from __future__ import annotations

from starlette.types import Receive, Scope


class ClientDisconnected(Exception):
    """``http.disconnect`` arrived while the request body was still being read."""


class BodyError(Exception):
    """The request body cannot be accepted."""


class BodyTooLarge(BodyError):
    """``drained``: the whole body was read (and dropped), so the connection can carry on."""

    def __init__(self, limit: int, *, drained: bool = False) -> None:
        super().__init__(f"request body over {limit} bytes")
        self.limit = limit
        self.drained = drained


class BadContentLength(BodyError):
    def __init__(self) -> None:
        super().__init__("the Content-Length header is not a number")


async def read_body(scope: Scope, receive: Receive, limit: int, *, drain: int = 0) -> bytes:
    """The whole body, refused early by a declared Content-Length or as soon as it passes limit.

    With ``drain`` > 0 a refused body of at most ``drain`` bytes in all is first read to its end
    and dropped: an HTTP/1.1 client sends its whole body before it reads the answer, and a server
    that closes on unread bytes makes the kernel reset the connection under that answer. Bigger
    bodies are refused at once (``drained`` False: the server should close the connection).
    """
    declared = -1
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise BadContentLength from None
            if declared > limit and declared > drain:
                raise BodyTooLarge(limit)
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        more = message.get("more_body", False)
        if size > limit or declared > limit:
            if size > drain:
                raise BodyTooLarge(limit)
            chunks.clear()
            if not more:
                raise BodyTooLarge(limit, drained=True)
            continue
        chunks.append(chunk)
        if not more:
            return b"".join(chunks)
