"""CORS as plain ASGI middleware: an origin allowlist, with preflight.

An allowed origin gets ``Access-Control-Allow-Origin: <origin>`` (never ``*`` with credentials)
and ``Vary: Origin``; an origin not on the list gets no CORS headers at all, and its preflight
is refused with 403. ``*`` in the list allows every origin. Requests without ``Origin`` (server
to server, the load generator) pass straight through with ``send`` unwrapped: no cost per chunk.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relay.errors import Forbidden, send_error

ALLOW_METHODS = b"GET, POST, OPTIONS"
ALLOW_HEADERS = frozenset({"authorization", "content-type", "x-api-key", "x-request-id"})
EXPOSE_HEADERS = (
    b"X-Request-ID, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"
)


class CORSMiddleware:
    def __init__(self, app: ASGIApp, allowed_origins: tuple[str, ...]) -> None:
        self.app = app
        self.allow_all = "*" in allowed_origins
        self.allowed = frozenset(origin.rstrip("/") for origin in allowed_origins)

    def _allowed(self, origin: str) -> bool:
        return self.allow_all or origin in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = requested_method = requested_headers = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"access-control-request-method":
                requested_method = value.decode("latin-1")
            elif name == b"access-control-request-headers":
                requested_headers = value.decode("latin-1")
        if origin is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and requested_method is not None:
            await self._preflight(send, origin, requested_method, requested_headers)
            return
        if not self._allowed(origin):
            await self.app(scope, receive, send)
            return
        cors_headers = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-expose-headers", EXPOSE_HEADERS),
            (b"vary", b"Origin"),
        ]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *cors_headers]
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(
        self, send: Send, origin: str, method: str, requested_headers: str | None
    ) -> None:
        if not self._allowed(origin):
            error = Forbidden(f"origin {origin!r} is not allowed", code="cors_origin_denied")
            await send_error(send, error, [(b"vary", b"Origin")])
            return
        if method.upper() not in ("GET", "POST"):
            error = Forbidden(f"method {method!r} is not allowed", code="cors_method_denied")
            await send_error(send, error, [(b"vary", b"Origin")])
            return
        asked = [h.strip().lower() for h in (requested_headers or "").split(",") if h.strip()]
        refused = [h for h in asked if h not in ALLOW_HEADERS]
        if refused:
            error = Forbidden(
                f"headers not allowed: {', '.join(refused)}", code="cors_header_denied"
            )
            await send_error(send, error, [(b"vary", b"Origin")])
            return
        headers = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-methods", ALLOW_METHODS),
            (b"access-control-allow-headers", ", ".join(sorted(ALLOW_HEADERS)).encode()),
            (b"access-control-max-age", b"600"),
            (b"vary", b"Origin"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
