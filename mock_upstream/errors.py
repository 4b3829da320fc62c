"""The mock's HTTP errors, always in OpenAI's shape.

    ApiError            any 4xx/5xx answer: status, message, type, code, param, headers
    ├── BadRequest      400 invalid_request_error (bad JSON, field, header or fault form)
    └── TooLarge        413 (request body over 1 MiB; read to its end up to 8 MiB first)
    ConnectionCut       not an answer: makes the server drop the connection mid-response
                        (the ``disconnect-after`` fault); the CLI's log filter keeps it quiet

ApiErrors are raised anywhere while a request is parsed; the completions endpoint is the one
place that turns
them into responses (and counts them).
"""

from __future__ import annotations

import orjson


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.headers = headers

    def body(self) -> bytes:
        return orjson.dumps(
            {
                "error": {
                    "message": self.message,
                    "type": self.type,
                    "param": self.param,
                    "code": self.code,
                }
            }
        )


class BadRequest(ApiError):
    def __init__(self, message: str, *, code: str = "invalid_value", param: str | None = None):
        super().__init__(400, message, code=code, param=param)


class TooLarge(ApiError):
    """``drained``: the rest of the body was read; else the answer closes the connection."""

    def __init__(self, limit: int, *, drained: bool = False) -> None:
        super().__init__(
            413,
            f"request body exceeds {limit} bytes",
            code="request_too_large",
            param=None,
            headers=() if drained else ((b"connection", b"close"),),
        )


class ConnectionCut(Exception):
    """Raised from a response to make the ASGI server close the connection (a deliberate cut)."""
