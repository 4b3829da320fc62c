"""The relay's one upstream client, and attempts with retries before the first byte.

A single ``httpx.AsyncClient`` with explicit pool limits and timeouts is shared by every
request. httpx's read timeout is off: the first-token and idle timeouts are enforced by the
request's ``Exchange`` (one timer, not one per chunk). ``open`` returns a 200 response whose
body has not been read; any other outcome is retried while it is retryable (connect errors,
429, 502/503/504), with exponential backoff and jitter, honouring ``Retry-After`` up to a cap,
all within a total deadline. Nothing is retried once a byte went to the client (``open`` is
only ever called before that).
"""

from __future__ import annotations

import asyncio
import random

import httpx

from relay.config import RelayConfig
from relay.errors import UpstreamError, from_status, from_transport
from relay.exchange import Exchange
from relay.metrics import Metrics

ERROR_BODY_LIMIT = 64 * 1024


def chat_url(base: str) -> str:
    """``http://h:p`` and ``http://h:p/v1`` both name the same OpenAI-compatible base."""
    return base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")


class Upstream:
    def __init__(self, config: RelayConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.url = chat_url(config.upstream_url)
        self.client = httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=config.pool_max_connections,
                max_keepalive_connections=config.pool_max_keepalive,
                keepalive_expiry=30.0,
            ),
            timeout=httpx.Timeout(
                connect=config.connect_timeout_s,
                read=None,
                write=config.connect_timeout_s,
                pool=config.pool_timeout_s,
            ),
            follow_redirects=False,
        )
        self.auth_header = (
            [("authorization", f"Bearer {config.upstream_api_key}")]
            if config.upstream_api_key
            else []
        )
        metrics.pool_state = self.pool_state

    def headers(self, stream: bool, request_id: str, forwarded: list[tuple[str, str]]) -> list:
        return [
            ("content-type", "application/json"),
            ("accept", "text/event-stream" if stream else "application/json"),
            ("accept-encoding", "identity"),  # bytes pass through unchanged: no compression
            ("x-request-id", request_id),
            *self.auth_header,
            *forwarded,
        ]

    async def open(
        self, body: bytes, headers: list, exchange: Exchange, log: dict
    ) -> tuple[httpx.Response, float]:
        """A 200 response (body unread) and when its attempt was sent (loop time)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.retry_deadline_s
        attempt = 0
        while True:
            request = self.client.build_request("POST", self.url, content=body, headers=headers)
            exchange.wait_first_byte()
            sent_at = loop.time()
            try:
                response = await self.client.send(request, stream=True)
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
            wake = loop.time() + delay
            await asyncio.sleep(wake - loop.time())

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
        """Connections in httpx's pool by state (reads httpcore's public ``connections``)."""
        pool = getattr(getattr(self.client, "_transport", None), "_pool", None)
        connections = list(getattr(pool, "connections", ()))
        idle = sum(1 for c in connections if c.is_idle())
        return {"total": len(connections), "idle": idle, "busy": len(connections) - idle}

    async def close(self) -> None:
        await self.client.aclose()


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)
