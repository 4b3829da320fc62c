"""Every way a relay request can fail, and the ONE place upstream failures become client outcomes.

    RelayError                   status  type                   when
    ├── BadRequest               400     invalid_request_error  body fails validation (names field)
    ├── PayloadTooLarge          413     invalid_request_error  body over --max-body-bytes
    ├── Unauthorized             401     authentication_error   missing/invalid key or JWT
    ├── Forbidden                403     invalid_request_error  CORS preflight refused
    ├── NotFound                 404     invalid_request_error  no such path
    ├── MethodNotAllowed         405     invalid_request_error  the path takes another method
    ├── RateLimited              429     rate_limit_error       plan's rpm or concurrent cap
    ├── Unavailable              503     server_error           draining, rate limiter down
    └── UpstreamError            502     upstream_error         anything the upstream did wrong
        ├── UpstreamConnectError 502                            could not connect (retryable)
        │   └── UpstreamTLSError 502                            certificate refused (not retried)
        ├── UpstreamTimeout      504                            connect / first token / idle gap
        ├── UpstreamStatus       429/502/503/4xx                non-200 answer (see from_status)
        ├── UpstreamPoolFull     503                            no pool connection in time
        └── UpstreamBroken       502                            cut, malformed data, no [DONE]

Before the first byte reached the client, an error becomes an HTTP status with an OpenAI-shaped
JSON body (``json_body``). After it, the same error becomes one SSE ``data:`` line
(``sse_line``) and the stream ends without ``[DONE]``, so a truncated stream never looks complete.
``from_transport`` and ``from_status`` are the only translations of upstream failures.
"""

from __future__ import annotations

import email.utils
import time

import httpx
import orjson
from starlette.types import Send

from relay.h1client import TLSError

# Upstream statuses worth another attempt (only ever before the client saw a byte).
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})


class RelayError(Exception):
    status = 500
    type = "server_error"
    code = "internal_error"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param
        self.headers = dict(headers or {})
        self.retry_after_s = retry_after_s

    def payload(self) -> dict[str, object]:
        error: dict[str, object] = {"message": self.message, "type": self.type, "code": self.code}
        if self.param is not None:
            error["param"] = self.param
        return {"error": error}

    def json_body(self) -> bytes:
        return orjson.dumps(self.payload())

    def sse_line(self) -> bytes:
        return b"data: " + self.json_body() + b"\n\n"


class BadRequest(RelayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class PayloadTooLarge(RelayError):
    status = 413
    type = "invalid_request_error"
    code = "body_too_large"


class Unauthorized(RelayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(RelayError):
    status = 403
    type = "invalid_request_error"
    code = "forbidden"


class NotFound(RelayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowed(RelayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class RateLimited(RelayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class Unavailable(RelayError):
    status = 503
    type = "server_error"
    code = "unavailable"


class UpstreamError(RelayError):
    status = 502
    type = "upstream_error"
    code = "upstream_error"

    @property
    def kind(self) -> str:
        """The label under which /metrics counts it."""
        return self.code.removeprefix("upstream_")


class UpstreamConnectError(UpstreamError):
    code = "upstream_connect_error"
    retryable = True


class UpstreamTLSError(UpstreamConnectError):
    code = "upstream_tls_error"
    retryable = False


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class UpstreamStatus(UpstreamError):
    def __init__(self, message: str, *, status: int, upstream_status: int, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.status = status
        self.upstream_status = upstream_status
        self.retryable = upstream_status in RETRYABLE_STATUSES

    @property
    def kind(self) -> str:
        return f"status_{self.upstream_status}"


class UpstreamPoolFull(UpstreamError):
    status = 503
    code = "pool_full"


class UpstreamBroken(UpstreamError):
    code = "upstream_stream_broken"
    forward = b""  # stream bytes that arrived, valid, with the broken part: the client gets them


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def from_transport(exc: httpx.TransportError) -> UpstreamError:
    """An httpx transport failure before the response started."""
    if isinstance(exc, httpx.ConnectTimeout):
        return UpstreamTimeout(
            "timed out connecting to the upstream", code="upstream_connect_timeout"
        )
    if isinstance(exc, httpx.PoolTimeout):
        return UpstreamPoolFull("the relay's upstream connection pool is exhausted")
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout("the upstream timed out")
    if isinstance(exc, TLSError):
        return UpstreamTLSError("the upstream's TLS certificate was not accepted")
    if isinstance(exc, httpx.ConnectError):
        return UpstreamConnectError("could not connect to the upstream")
    return UpstreamBroken(f"the upstream connection failed ({type(exc).__name__})")


def from_status(status: int, headers: httpx.Headers, body: bytes) -> UpstreamError:
    """A non-200 upstream answer: the status and message the client gets."""
    retry_after = headers.get("retry-after")
    if status == 429:
        passed = {"Retry-After": retry_after} if retry_after else {}
        return UpstreamStatus(
            "the upstream is rate limiting the relay",
            status=429,
            upstream_status=429,
            code="upstream_rate_limited",
            headers=passed,
            retry_after_s=parse_retry_after(retry_after),
        )
    if status in (401, 403):
        # Never echo the upstream's body: it may quote (part of) the relay's provider key.
        return UpstreamStatus(
            "the relay's upstream credentials failed",
            status=502,
            upstream_status=status,
            code="upstream_auth_failed",
        )
    if status >= 500:
        return UpstreamStatus(
            f"the upstream failed with status {status}",
            status=503 if status == 503 else 502,
            upstream_status=status,
            code="upstream_unavailable" if status == 503 else "upstream_server_error",
            retry_after_s=parse_retry_after(retry_after),
        )
    # Other 4xx: the request itself was refused upstream; say why, with the upstream's message.
    message = f"the upstream refused the request with status {status}"
    try:
        upstream_message = orjson.loads(body)["error"]["message"]
        if isinstance(upstream_message, str):
            message += f": {upstream_message[:500]}"
    except (orjson.JSONDecodeError, KeyError, TypeError):
        pass
    return UpstreamStatus(message, status=status, upstream_status=status, code="upstream_refused")


async def send_error(
    send: Send, exc: RelayError, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answer with ``exc`` as an OpenAI-shaped JSON error (before any byte was sent)."""
    body = exc.json_body()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in exc.headers.items()),
        *(extra or ()),
    ]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
