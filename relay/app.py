"""The relay application: endpoints, the request flow, and graceful draining.

Request flow for ``POST /v1/chat/completions`` and ``POST /api/chat/stream``:

    AccessMiddleware (request id, status count, log line)
      -> CORSMiddleware -> AuthMiddleware (principal) -> ChatEndpoint:
         read + validate body -> rate limit -> concurrent-requests slot ->
         Upstream.open (retries before the first byte) -> stream or read the answer

The chat endpoint is a raw ASGI callable: each upstream chunk becomes one
``http.response.body`` message, with nothing per chunk but the filter and the write. Until the
client has a byte, failures are HTTP statuses with JSON errors; after, an SSE error line and no
``[DONE]``. Every interruption (client gone, timeouts, shutdown) arrives through ``Exchange``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from relay import exchange as ex
from relay.access import AccessMiddleware
from relay.auth import Authenticator, AuthMiddleware, Principal
from relay.config import RelayConfig
from relay.cors import CORSMiddleware
from relay.errors import (
    RelayError,
    Unavailable,
    UpstreamBroken,
    UpstreamError,
    UpstreamTimeout,
    from_transport,
)
from relay.errors import send_error as send_json_error
from relay.exchange import Exchange, watch_disconnect
from relay.keys import KeyStore, Plan
from relay.metrics import Metrics
from relay.ratelimit import MemoryBackend, RateLimiter, RedisBackend, StreamSlots
from relay.streaming import StreamFilter
from relay.upstream import Upstream, UpstreamResponse
from relay.validation import check_chat, parse_json, read_body
from relaybench.asgi import ClientDisconnected
from relaybench.errors import UsageError

log = logging.getLogger("relay.app")

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
CLASSIC_FIELDS = ("messages", "model", "temperature", "max_tokens")


def load_keys(config: RelayConfig) -> tuple[KeyStore, Plan]:
    """The keys file and the anonymous plan; a configuration that cannot work is a UsageError."""
    keys = KeyStore(config.keys_file)
    if config.auth and config.keys_file is None and not config.jwt_secret:
        raise UsageError(
            "auth is on but neither --keys-file nor --jwt-secret is set "
            "(use --auth off for a bare proxy)"
        )
    anon = keys.plans.get(config.anon_plan)
    if anon is None:
        raise UsageError(f"--anon-plan {config.anon_plan!r} is not a known plan")
    return keys, anon


class Relay:
    """Everything a request needs, built once from the config (no globals)."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        keys, anon = load_keys(config)
        self.authenticator = Authenticator(keys, config.jwt_secret, config.auth, anon)
        backend = (
            RedisBackend(config.redis_url, config.redis_timeout_s)
            if config.redis_url
            else MemoryBackend()
        )
        self.limiter = RateLimiter(
            backend, self.metrics, config.ratelimit_fail == "open", config.redis_retry_s
        )
        self.slots = StreamSlots(self.metrics)
        self.upstream = Upstream(config, self.metrics)
        self.exchanges: set[Exchange] = set()
        self.draining = False
        self.forward_prefixes = tuple(p.lower().encode() for p in config.forward_header_prefixes)

    # -- lifecycle ----------------------------------------------------------------------------

    def begin_drain(self) -> None:
        """Stop taking requests; after the grace period, end what is still streaming."""
        if self.draining:
            return
        self.draining = True
        asyncio.get_running_loop().call_later(self.config.grace_s, self._cut_all)

    def _cut_all(self) -> None:
        for exchange in list(self.exchanges):
            exchange.interrupt(ex.SHUTDOWN)

    async def close(self) -> None:
        await self.upstream.close()
        await self.limiter.close()

    # -- the chat flow ------------------------------------------------------------------------

    async def chat(self, scope: Scope, receive: Receive, send: Send, classic: bool) -> None:
        fields: dict[str, Any] = scope["relay.log"]
        principal: Principal = scope["relay.principal"]
        fields["principal"] = principal.id
        rate: list[tuple[bytes, bytes]] = []  # X-RateLimit-* of this request's charge
        try:
            if self.draining:
                raise Unavailable("the relay is shutting down", code="shutting_down")
            document = parse_json(await read_body(scope, receive, self.config.max_body_bytes))
            body, stream, strip_usage = self._prepare(document, classic)
            # The slot first: a request refused for too many concurrent streams uses up none
            # of the minute budget.
            with self.slots.hold(principal):
                decision = await self.limiter.check(principal)
                rate = [] if decision is None else decision.header_pairs()
                headers = self.upstream.headers(
                    stream, scope["relay.request_id"], self._forwarded(scope)
                )
                await self._exchange(
                    send, receive, body, headers, stream, strip_usage, rate, fields
                )
        except ClientDisconnected:
            fields["outcome"] = "client_gone"
            self.metrics.client_disconnects += 1
        except RelayError as error:
            fields["outcome"] = error.code
            if "X-RateLimit-Limit" not in error.headers:  # refused before any charge: peek
                peeked = await self.limiter.peek(principal)
                rate = [] if peeked is None else peeked.header_pairs()
            await send_json_error(send, error, rate)

    def _prepare(self, document: dict[str, Any], classic: bool) -> tuple[bytes, bool, bool]:
        """Validate, and build the upstream body: (body, stream, relay asked for usage)."""
        if classic:
            document = {k: document[k] for k in CLASSIC_FIELDS if k in document}
            check_chat(document)
            document.setdefault("model", self.config.default_model)
            document["stream"] = True
        else:
            check_chat(document)
        stream = document.get("stream") is True
        if not stream:
            return orjson.dumps(document), False, False
        options = document.get("stream_options") or {}
        strip_usage = options.get("include_usage") is not True
        document["stream_options"] = {**options, "include_usage": True}
        return orjson.dumps(document), True, strip_usage

    def _forwarded(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        return [
            (name, value)
            for name, value in scope["headers"]
            if name.startswith(self.forward_prefixes)
        ]

    async def _exchange(
        self,
        send: Send,
        receive: Receive,
        body: bytes,
        headers: list[tuple[bytes, bytes]],
        stream: bool,
        strip_usage: bool,
        extra: list[tuple[bytes, bytes]],
        fields: dict[str, Any],
    ) -> None:
        exchange = Exchange(self.config.first_token_timeout_s, self.config.idle_timeout_s)
        watcher = asyncio.get_running_loop().create_task(watch_disconnect(receive, exchange))
        self.exchanges.add(exchange)
        self.metrics.active_streams += 1
        started = [False]  # the client has the response start: errors become SSE lines
        response: UpstreamResponse | None = None
        try:
            try:
                response, sent_at = await self.upstream.open(body, headers, exchange, fields)
                if stream:
                    await self._stream(
                        send, response, exchange, sent_at, strip_usage, extra, started, fields
                    )
                else:
                    await self._complete(send, response, exchange, sent_at, extra, fields)
            except asyncio.CancelledError:
                if not exchange.caused():
                    raise
                raise self._interrupted(exchange.reason) from None
            except httpx.TransportError as exc:
                raise (
                    UpstreamBroken("the upstream connection was cut", code="upstream_cut")
                    if started[0]
                    else from_transport(exc)
                ) from None
            finally:
                exchange.finish()
                if response is not None:
                    await response.aclose()
        except _ClientLeft:
            fields["outcome"] = "client_gone"
            self.metrics.client_disconnects += 1
        except RelayError as error:
            fields["outcome"] = error.code
            if isinstance(error, UpstreamError):
                self.metrics.upstream_errors[error.kind] += 1
            if not started[0]:
                await send_json_error(send, error, extra)
            else:
                await send({"type": "http.response.body", "body": error.sse_line()})
        finally:
            watcher.cancel()
            self.exchanges.discard(exchange)
            self.metrics.active_streams -= 1

    def _interrupted(self, reason: str | None) -> Exception:
        if reason == ex.DISCONNECT:
            return _ClientLeft()
        if reason == ex.FIRST_TOKEN_TIMEOUT:
            ms = round(self.config.first_token_timeout_s * 1000)
            return UpstreamTimeout(
                f"no response from the upstream within {ms} ms", code="upstream_first_token_timeout"
            )
        if reason == ex.IDLE_TIMEOUT:
            ms = round(self.config.idle_timeout_s * 1000)
            return UpstreamTimeout(
                f"the upstream stalled: no data for {ms} ms", code="upstream_idle_timeout"
            )
        return Unavailable("the relay is shutting down", code="shutting_down")

    async def _stream(
        self,
        send: Send,
        response: UpstreamResponse,
        exchange: Exchange,
        sent_at: float,
        strip_usage: bool,
        extra: list[tuple[bytes, bytes]],
        started: list[bool],
        fields: dict[str, Any],
    ) -> None:
        loop = exchange.loop
        stream_filter = StreamFilter(strip_usage)
        keepalive_s = self.config.keepalive_s
        chunks = response.aiter_raw()
        first = await self._first_chunk(send, chunks, exchange, keepalive_s, extra, started)
        ttfb = time.perf_counter() - sent_at
        self.metrics.observe_ttfb(ttfb)
        fields["ttfb_ms"] = round(ttfb * 1000, 3)
        exchange.receiving()
        if not started[0]:
            await send(
                {"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + extra}
            )
            started[0] = True
        out = stream_filter.feed(first)
        if out:
            await send({"type": "http.response.body", "body": out, "more_body": True})
        # ``last`` is stamped after the write: time blocked on a slow client is not upstream idle.
        exchange.last = loop.time()
        async for chunk in chunks:
            out = stream_filter.feed(chunk)
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
            exchange.last = loop.time()
        stream_filter.finish()
        self._count_usage(stream_filter.usage, fields)
        exchange.finish()
        await send({"type": "http.response.body", "body": b""})
        fields["outcome"] = "ok"

    async def _first_chunk(
        self,
        send: Send,
        chunks: Any,
        exchange: Exchange,
        keepalive_s: float,
        extra: list[tuple[bytes, bytes]],
        started: list[bool],
    ) -> bytes:
        """The first body chunk; meanwhile, optional ``: keep-alive`` comments to the client."""
        if keepalive_s <= 0:
            try:
                return await chunks.__anext__()
            except StopAsyncIteration:
                raise UpstreamBroken(
                    "the upstream sent an empty stream", code="upstream_stream_truncated"
                ) from None
        waiter = asyncio.ensure_future(chunks.__anext__())
        loop = exchange.loop
        next_at = loop.time() + keepalive_s  # comments at absolute times: start + k * interval
        try:
            while True:
                done, _ = await asyncio.wait((waiter,), timeout=max(0.0, next_at - loop.time()))
                if done:
                    try:
                        return waiter.result()
                    except StopAsyncIteration:
                        raise UpstreamBroken(
                            "the upstream sent an empty stream", code="upstream_stream_truncated"
                        ) from None
                if not started[0]:
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 200,
                            "headers": SSE_HEADERS + extra,
                        }
                    )
                    started[0] = True
                await send(
                    {"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True}
                )
                next_at += keepalive_s
        finally:
            if not waiter.done():  # let the read end before the response is closed under it
                waiter.cancel()
                await asyncio.wait((waiter,))

    async def _complete(
        self,
        send: Send,
        response: UpstreamResponse,
        exchange: Exchange,
        sent_at: float,
        extra: list[tuple[bytes, bytes]],
        fields: dict[str, Any],
    ) -> None:
        loop = exchange.loop
        parts: list[bytes] = []
        async for chunk in response.aiter_raw():
            if not parts:
                ttfb = time.perf_counter() - sent_at
                self.metrics.observe_ttfb(ttfb)
                fields["ttfb_ms"] = round(ttfb * 1000, 3)
                exchange.receiving()
            exchange.last = loop.time()
            parts.append(chunk)
        body = b"".join(parts)
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise UpstreamBroken(
                "the upstream sent a malformed answer", code="upstream_malformed"
            ) from None
        if isinstance(answer, dict):
            self._count_usage(answer.get("usage"), fields)
        exchange.finish()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *extra,
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        fields["outcome"] = "ok"

    def _count_usage(self, usage: object, fields: dict[str, Any]) -> None:
        if isinstance(usage, dict):
            self.metrics.add_usage(fields["principal"], usage)
            fields["tokens"] = usage.get("completion_tokens")


class _ClientLeft(Exception):
    """The client disconnected mid-request; nothing more is sent."""


class ChatEndpoint:
    """A raw ASGI endpoint (an instance, so Starlette's Route does not wrap it)."""

    def __init__(self, relay: Relay, classic: bool) -> None:
        self.relay = relay
        self.classic = classic

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.relay.chat(scope, receive, send, self.classic)


def build_app(relay: Relay) -> Starlette:
    async def health(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "draining" if relay.draining else "ok",
                "pid": os.getpid(),
                "active_streams": relay.metrics.active_streams,
                "tasks": len(asyncio.all_tasks()),  # a leak of watchers or readers shows here
                "auth": relay.config.auth,
                "ratelimit_backend": relay.limiter.backend.name,
                "upstream_pool": relay.upstream.pool_state(),
            }
        )

    async def metrics(request: Request) -> Response:
        return Response(relay.metrics.render(), media_type="text/plain; version=0.0.4")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        error = {"message": exc.detail, "type": "invalid_request_error", "code": "not_found"}
        if exc.status_code == 405:
            error["code"] = "method_not_allowed"
        return JSONResponse({"error": error}, status_code=exc.status_code, headers=exc.headers)

    async def internal_error(request: Request, exc: Exception) -> Response:
        error = {
            "message": "internal relay error",
            "type": "server_error",
            "code": "internal_error",
        }
        return JSONResponse({"error": error}, status_code=500)

    return Starlette(
        routes=[
            Route("/v1/chat/completions", ChatEndpoint(relay, classic=False), methods=["POST"]),
            Route("/api/chat/stream", ChatEndpoint(relay, classic=True), methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        middleware=[
            Middleware(AccessMiddleware, metrics=relay.metrics),
            Middleware(CORSMiddleware, allowed_origins=relay.config.allowed_origins),
            Middleware(AuthMiddleware, authenticator=relay.authenticator),
        ],
        exception_handlers={HTTPException: http_error, Exception: internal_error},
    )
