"""The one place that maps what happened to a request onto the error taxonomy.

    outcome of a request
    ├── ok                  a complete, valid answer ([DONE] seen for streams)
    └── error
        ├── connect         no connection (refused, DNS, connect timeout)
        ├── timeout         connected, then no bytes for longer than the read timeout
        ├── http_429        rate limited
        ├── http_4xx        any other 4xx
        ├── http_5xx        any 5xx (and any other non-2xx status)
        ├── stream_error    an SSE ``error`` object in the stream
        ├── truncated       the stream or body ended early (no ``[DONE]``, connection cut)
        └── malformed       a data line or body that is not the JSON we expect

The record builder and the user call these functions; nothing else spells an error type.
"""

from __future__ import annotations

import socket

CONNECT = "connect"
TIMEOUT = "timeout"
HTTP_429 = "http_429"
HTTP_4XX = "http_4xx"
HTTP_5XX = "http_5xx"
STREAM_ERROR = "stream_error"
TRUNCATED = "truncated"
MALFORMED = "malformed"

ERROR_TYPES = (CONNECT, TIMEOUT, HTTP_429, HTTP_4XX, HTTP_5XX, STREAM_ERROR, TRUNCATED, MALFORMED)


def from_status(status: int) -> str | None:
    """The error type of an HTTP status, or None for 2xx."""
    if 200 <= status < 300:
        return None
    if status == 429:
        return HTTP_429
    if 400 <= status < 500:
        return HTTP_4XX
    return HTTP_5XX


def from_exception(exc: BaseException, *, connected: bool) -> str:
    """The error type of a transport exception.

    ``connected`` says whether the request was already on the wire: a timeout before that is a
    failure to connect, after it a read timeout; a reset after it is a truncated answer.
    """
    if isinstance(exc, (TimeoutError, socket.timeout)) or type(exc).__name__ == "Timeout":
        return TIMEOUT if connected else CONNECT
    if not connected:
        return CONNECT
    return TRUNCATED
