"""Request IDs and the one structured access-log line per request.

``X-Request-ID`` is taken from the request when it is a sane token (else generated); the relay
sends it upstream, echoes it on the response and logs it. Handlers add their own fields
(principal, outcome, tokens...) to the request's log fields; the relay's ASGI layer writes the
line when the request ends.
"""

from __future__ import annotations

import logging
import re
import uuid

from starlette.types import Scope

log = logging.getLogger("relay.access")

_SANE_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
CLIENT_CLOSED = 499  # the nginx convention: the client went away before any response


def request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and _SANE_ID.fullmatch(value):
            return value.decode()
    return uuid.uuid4().hex


def log_request(scope: Scope, request_id: str, duration_s: float, fields: dict) -> None:
    log.info(
        "request",
        extra={
            "request_id": request_id,
            "method": scope["method"],
            "path": scope["path"],
            "duration_ms": round(duration_s * 1000, 3),
            **fields,
        },
    )
