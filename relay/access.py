"""Request IDs, per-status counts and one structured access-log line per request (plain ASGI).

``X-Request-ID`` is taken from the request when it is a sane token (else generated), put in
``scope["relay.request_id"]``, sent upstream, echoed on the response and logged. Handlers add
their own fields (principal, outcome, tokens...) to ``scope["relay.log"]``.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relay.metrics import Metrics

log = logging.getLogger("relay.access")

_SANE_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
ROUTES = frozenset({"/v1/chat/completions", "/api/chat/stream", "/health", "/metrics"})
CLIENT_CLOSED = 499  # the nginx convention: the client went away before any response


class AccessMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id" and _SANE_ID.fullmatch(value):
                request_id = value.decode()
                break
        if request_id is None:
            request_id = uuid.uuid4().hex
        scope["relay.request_id"] = request_id
        fields: dict = {}
        scope["relay.log"] = fields
        id_header = (b"x-request-id", request_id.encode())
        status = CLIENT_CLOSED

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope["path"] if scope["path"] in ROUTES else "other"
            self.metrics.requests[(route, status)] += 1
            log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                    **fields,
                },
            )
