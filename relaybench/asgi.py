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
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body over {limit} bytes")
        self.limit = limit


class BadContentLength(BodyError):
    def __init__(self) -> None:
        super().__init__("the Content-Length header is not a number")


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole body, refused early by a declared Content-Length or as soon as it passes limit."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise BadContentLength from None
            if declared > limit:
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
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
