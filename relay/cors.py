"""CORS: an origin allowlist, with preflight.

An allowed origin gets ``Access-Control-Allow-Origin: <origin>`` (never ``*`` with credentials)
and ``Vary: Origin``; an origin not on the list gets no CORS headers at all, and its preflight
is refused with 403. ``*`` in the list allows every origin. The relay's ASGI layer asks this
policy once per request, before anything is sent: nothing of it runs per streamed chunk.
"""

from __future__ import annotations

from relay.errors import Forbidden

ALLOW_METHODS = b"GET, POST, OPTIONS"
ALLOW_HEADERS = frozenset({"authorization", "content-type", "x-api-key", "x-request-id"})
EXPOSE_HEADERS = (
    b"X-Request-ID, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"
)


class CorsPolicy:
    def __init__(self, allowed_origins: tuple[str, ...]) -> None:
        self.allow_all = "*" in allowed_origins
        self.allowed = frozenset(origin.rstrip("/") for origin in allowed_origins)

    def _allowed(self, origin: str) -> bool:
        return self.allow_all or origin in self.allowed

    def response_headers(self, origin: str) -> list[tuple[bytes, bytes]]:
        """Headers for an actual (non-preflight) request from ``origin``: none if refused."""
        if not self._allowed(origin):
            return []
        return [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-expose-headers", EXPOSE_HEADERS),
            (b"vary", b"Origin"),
        ]

    def preflight(
        self, origin: str, method: str, requested_headers: str | None
    ) -> list[tuple[bytes, bytes]]:
        """The 204 answer's headers, or Forbidden naming what is not allowed."""
        if not self._allowed(origin):
            raise Forbidden(f"origin {origin!r} is not allowed", code="cors_origin_denied")
        if method.upper() not in ("GET", "POST"):
            raise Forbidden(f"method {method!r} is not allowed", code="cors_method_denied")
        asked = [h.strip().lower() for h in (requested_headers or "").split(",") if h.strip()]
        refused = [h for h in asked if h not in ALLOW_HEADERS]
        if refused:
            raise Forbidden(f"headers not allowed: {', '.join(refused)}", code="cors_header_denied")
        return [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-methods", ALLOW_METHODS),
            (b"access-control-allow-headers", ", ".join(sorted(ALLOW_HEADERS)).encode()),
            (b"access-control-max-age", b"600"),
            (b"vary", b"Origin"),
            (b"content-length", b"0"),
        ]
