"""The relay's one upstream client, and attempts with retries before the first byte.

One pool with explicit limits and timeouts is shared by every request: for an ``http://``
upstream, ``relay.h1client.H1Pool`` (httptools-parsed, the relay's hot path); for ``https://``,
an ``httpx.AsyncClient``. Both answer with an object offering ``status_code``, ``headers``,
``aiter_raw()`` and ``aclose()``, and fail with httpx's exceptions. There is no read timeout:
the first-token and idle timeouts are enforced by the request's ``Exchange`` (one timer, not
one per chunk). ``open`` returns a 200 response whose
body has not been read; any other outcome is retried while it is retryable (connect errors,
429, 502/503/504), with exponential backoff and jitter, honouring ``Retry-After`` up to a cap,
all within a total deadline. Nothing is retried once a byte went to the client (``open`` is
only ever called before that).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from typing import Protocol

import httpcore
import httpx

from relay.config import RelayConfig
from relay.errors import UpstreamError, from_status, from_transport
from relay.exchange import Exchange
from relay.h1client import H1Pool
from relay.metrics import Metrics

ERROR_BODY_LIMIT = 64 * 1024


class UpstreamResponse(Protocol):
    """What the relay uses of a response: ``H1Response`` and ``httpx.Response`` both fit."""

    status_code: int

    @property
    def headers(self) -> httpx.Headers: ...

    def aiter_raw(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


def chat_url(base: str) -> str:
    """``http://h:p`` and ``http://h:p/v1`` both name the same OpenAI-compatible base."""
    return base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")


class _LinearPool(httpcore.AsyncConnectionPool):
    """httpcore's connection pool with its per-request bookkeeping made linear.

    httpcore 1.0's ``_assign_requests_to_connections`` runs at every request start and end. For
    each idle connection it rebuilds a list of all connections (quadratic: with 100 upstream
    streams, ~10^4 calls per request) and polls every idle socket for readability (a syscall
    each). Profiled at 50 concurrent streams that was ~40% of the relay's CPU. Here one pass
    drops closed connections and surplus idle ones, and only the idle connection about to be
    reused is checked for expiry or a server-side close (same safety, one syscall).
    """

    def _assign_requests_to_connections(self) -> list:
        closing = []
        kept = []
        idle = 0
        for connection in self._connections:
            if connection.is_closed():
                continue
            if connection.is_idle():
                idle += 1
                if idle > self._max_keepalive_connections:
                    closing.append(connection)
                    continue
            kept.append(connection)
        self._connections = kept
        for pool_request in self._requests:
            if not pool_request.is_queued():
                continue
            origin = pool_request.request.url.origin
            chosen = None
            for connection in list(self._connections):
                if not (connection.can_handle_request(origin) and connection.is_available()):
                    continue
                if connection.has_expired():
                    self._connections.remove(connection)
                    closing.append(connection)
                    continue
                chosen = connection
                break
            if chosen is None:
                if len(self._connections) >= self._max_connections:
                    spare = next((c for c in self._connections if c.is_idle()), None)
                    if spare is None:
                        continue  # stays queued until a connection frees up
                    self._connections.remove(spare)
                    closing.append(spare)
                chosen = self.create_connection(origin)
                self._connections.append(chosen)
            pool_request.assign_to_connection(chosen)
        return closing


class Upstream:
    def __init__(self, config: RelayConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.url = chat_url(config.upstream_url)
        self._parsed_url = httpx.URL(self.url)  # parsed once, not per request
        self._target = (
            (self._parsed_url.raw_path or b"/") if self.url.startswith("http://") else b""
        )
        self.pool: H1Pool | None = None
        self.client: httpx.AsyncClient | None = None
        if self._target:
            self.pool = H1Pool(
                config.upstream_url,
                max_connections=config.pool_max_connections,
                max_keepalive=config.pool_max_keepalive,
                keepalive_expiry=config.pool_idle_s,
                connect_timeout=config.connect_timeout_s,
                write_timeout=config.connect_timeout_s,
                pool_timeout=config.pool_timeout_s,
            )
        else:
            self.client = _httpx_client(config)
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

    async def _send(self, body: bytes, headers: list[tuple[bytes, bytes]]) -> UpstreamResponse:
        if self.pool is not None:
            return await self.pool.request(b"POST", self._target, headers, body)
        assert self.client is not None
        request = self.client.build_request("POST", self._parsed_url, content=body, headers=headers)
        return await self.client.send(request, stream=True)

    async def open(
        self, body: bytes, headers: list[tuple[bytes, bytes]], exchange: Exchange, log: dict
    ) -> tuple[UpstreamResponse, float]:
        """A 200 response (body unread) and when its attempt was sent (``perf_counter``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.retry_deadline_s
        attempt = 0
        while True:
            exchange.wait_first_byte()
            sent_at = time.perf_counter()  # uvloop's loop.time() only has millisecond steps
            try:
                response = await self._send(body, headers)
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
            self.metrics.upstream_retries += 1
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
        """Upstream connections by state: the H1Pool's own count, or httpcore's ``connections``."""
        if self.pool is not None:
            return self.pool.state()
        pool = getattr(getattr(self.client, "_transport", None), "_pool", None)
        connections = list(getattr(pool, "connections", ()))
        idle = sum(1 for c in connections if c.is_idle())
        return {"total": len(connections), "idle": idle, "busy": len(connections) - idle}

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.aclose()
        if self.client is not None:
            await self.client.aclose()


def _httpx_client(config: RelayConfig) -> httpx.AsyncClient:
    """The ``https://`` upstream's client, its pool's bookkeeping made linear."""
    client = httpx.AsyncClient(
        limits=httpx.Limits(
            max_connections=config.pool_max_connections,
            max_keepalive_connections=config.pool_max_keepalive,
            keepalive_expiry=config.pool_idle_s,
        ),
        timeout=httpx.Timeout(
            connect=config.connect_timeout_s,
            read=None,
            write=config.connect_timeout_s,
            pool=config.pool_timeout_s,
        ),
        follow_redirects=False,
    )
    pool = getattr(client._transport, "_pool", None)
    if type(pool) is httpcore.AsyncConnectionPool:
        pool.__class__ = _LinearPool
    return client


async def _read_capped(response: UpstreamResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)
