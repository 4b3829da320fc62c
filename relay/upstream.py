"""The relay's one upstream client, and attempts with retries before the first byte.

One ``relay.h1client.H1Pool`` with explicit limits and timeouts is shared by every request, for
``http://`` and ``https://`` upstreams alike (TLS verified against the system's trust store, or
``--upstream-ca-file``). There is no read timeout: the first-token and idle timeouts are
enforced by the request's ``Exchange`` (one timer, not one per chunk). ``open`` returns a 200
response whose body has not been read; any other outcome is retried while it is retryable
(connect errors, 429, 502/503/504), with exponential backoff and jitter, honouring
``Retry-After`` up to a cap, all within a total deadline. Nothing is retried once a byte went to
the client (``open`` is only ever called before that).
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from urllib.parse import urlsplit

import httpx

from relay.config import RelayConfig
from relay.errors import UpstreamError, from_status, from_transport
from relay.exchange import Exchange
from relay.h1client import H1Pool, H1Response
from relay.metrics import Metrics
from relaybench.errors import UsageError

ERROR_BODY_LIMIT = 64 * 1024


def chat_url(base: str) -> str:
    """``http://h:p`` and ``http://h:p/v1`` both name the same OpenAI-compatible base."""
    return base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")


def tls_context(config: RelayConfig) -> ssl.SSLContext | None:
    """For an ``https://`` upstream: chain and hostname verified, against the CA file if given."""
    if not config.upstream_url.startswith("https://"):
        if config.upstream_ca_file is not None:
            raise UsageError("--upstream-ca-file is only for an https:// --upstream-url")
        return None
    try:
        return ssl.create_default_context(
            cafile=None if config.upstream_ca_file is None else str(config.upstream_ca_file)
        )
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"--upstream-ca-file {config.upstream_ca_file}: {exc}") from None


class Upstream:
    def __init__(self, config: RelayConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.url = chat_url(config.upstream_url)
        self._target = (urlsplit(self.url).path or "/").encode("ascii")  # once, not per request
        self.pool = H1Pool(
            config.upstream_url,
            max_connections=config.pool_max_connections,
            max_keepalive=config.pool_max_keepalive,
            keepalive_expiry=config.pool_idle_s,
            connect_timeout=config.connect_timeout_s,
            write_timeout=config.connect_timeout_s,
            pool_timeout=config.pool_timeout_s,
            ssl_context=tls_context(config),
        )
        self.auth_header = (
            [(b"authorization", f"Bearer {config.upstream_api_key}".encode("latin-1"))]
            if config.upstream_api_key
            else []
        )
        metrics.pool_state = self.pool_state

    def headers(
        self, stream: bool, request_id: str, forwarded: list[tuple[bytes, bytes]]
    ) -> list[tuple[bytes, bytes]]:
        return [
            (b"content-type", b"application/json"),
            (b"accept", b"text/event-stream" if stream else b"application/json"),
            (b"accept-encoding", b"identity"),  # bytes pass through unchanged: no compression
            (b"x-request-id", request_id.encode("latin-1")),
            *self.auth_header,
            *forwarded,
        ]

    async def open(
        self, body: bytes, headers: list[tuple[bytes, bytes]], exchange: Exchange, log: dict
    ) -> tuple[H1Response, float]:
        """A 200 response (body unread) and when its attempt was sent (``perf_counter``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.retry_deadline_s
        attempt = 0
        while True:
            exchange.wait_first_byte()
            sent_at = time.perf_counter()  # uvloop's loop.time() only has millisecond steps
            try:
                response = await self.pool.request(b"POST", self._target, headers, body)
            except httpx.TransportError as exc:
                error = from_transport(exc)
            else:
                if response.status_code == 200:
                    return response, sent_at
                try:
                    detail = await _read_capped(response, ERROR_BODY_LIMIT)
                finally:
                    await response.aclose()
                error = from_status(response.status_code, response.headers, detail)
            delay = self._backoff(attempt, error)
            exchange.pause()
            if delay is None or loop.time() + delay > deadline:
                raise error
            attempt += 1
            log["retries"] = attempt
            self.metrics.upstream_retries.inc()
            await asyncio.sleep(delay)

    def _backoff(self, attempt: int, error: UpstreamError) -> float | None:
        """Seconds before the next attempt, or None: give up now."""
        if not error.retryable or attempt >= self.config.max_retries:
            return None
        if error.retry_after_s is not None:
            if error.retry_after_s > self.config.retry_after_cap_s:
                return None  # the upstream asks for longer than we may wait: tell the client
            return error.retry_after_s
        step = self.config.retry_base_s * 2**attempt
        return step / 2 + random.uniform(0, step / 2)

    def pool_state(self) -> dict[str, int]:
        """Upstream connections by state (total, idle, busy)."""
        return self.pool.state()

    async def close(self) -> None:
        await self.pool.aclose()


async def _read_capped(response: H1Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)
