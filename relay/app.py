"""The relay application: endpoints, the request flow, and graceful draining.

``RelayApp`` is the one ASGI layer (pure ASGI, in the style of Starlette's TrustedHostMiddleware):
for every request it takes the request id, answers CORS preflights, authenticates, routes, and
writes the access-log line at the end. All of that happens before the response starts; the chat
flow then writes straight to the server's ``send``, so nothing wraps a streamed chunk.

Request flow for ``POST /v1/chat/completions`` and ``POST /api/chat/stream``:

    request id, CORS, auth (principal) -> Relay.chat:
       read + validate body -> concurrent-requests slot -> rate limit ->
       Upstream.open (retries before the first byte) -> stream or read the answer

Each upstream read becomes one ``http.response.body`` message, with nothing per chunk but the
filter and the write. Until the client has a byte, failures are HTTP statuses with JSON errors;
after, an SSE error line and no ``[DONE]``. Every interruption (client gone, timeouts, shutdown)
arrives through ``Exchange``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import httpx
import orjson
from starlette.types import Receive, Scope, Send

from relay import exchange as ex
from relay.access import CLIENT_CLOSED, log_request, request_id
from relay.auth import CHALLENGE, PROTECTED_PREFIXES, Authenticator, Principal
from relay.config import RelayConfig
from relay.cors import CorsPolicy
from relay.errors import (
    MethodNotAllowed,
    NotFound,
    RelayError,
    Unavailable,
    UpstreamBroken,
    UpstreamError,
    UpstreamTimeout,
    from_transport,
)
from relay.errors import send_error as send_json_error
from relay.exchange import Exchange, watch_disconnect
from relay.forward import Forward
from relay.h1client import H1Response
from relay.keys import KeyStore, Plan
from relay.metrics import CONTENT_TYPE, Metrics
from relay.ratelimit import MemoryBackend, RateLimiter, RedisBackend, StreamSlots
from relay.streaming import StreamFilter
from relay.upstream import Upstream
from relay.validation import check_chat, parse_json, read_body
from relaybench.asgi import ClientDisconnected
from relaybench.errors import UsageError
from relaybench.wire import Wire, wire_of

log = logging.getLogger("relay.app")

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
# Messages that never change, built once (the server only reads them).
KEEPALIVE = {"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True}
END = {"type": "http.response.body", "body": b"", "more_body": False}
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
        self.metrics.start()  # several workers: the shared live gauges (needs the running loop)
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
        self.metrics.stop()
        await self.upstream.close()
        await self.limiter.close()

    # -- the chat flow ------------------------------------------------------------------------

    async def chat(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        classic: bool,
        principal: Principal,
        head: list[tuple[bytes, bytes]],
        fields: dict[str, Any],
    ) -> None:
        """One chat request; ``head``: headers every response carries (request id, CORS)."""
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
                    stream, fields["request_id"], self._forwarded(scope)
                )
                await self._exchange(
                    send, receive, body, headers, stream, strip_usage, head + rate, fields,
                    wire_of(scope),
                )  # fmt: skip
        except ClientDisconnected:
            fields["outcome"] = "client_gone"
            self.metrics.client_disconnects.inc()
        except RelayError as error:
            fields["outcome"] = error.code
            if "X-RateLimit-Limit" not in error.headers:  # refused before any charge: peek
                peeked = await self.limiter.peek(principal)
                rate = [] if peeked is None else peeked.header_pairs()
            fields["status"] = error.status
            await send_json_error(send, error, head + rate)

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
        wire: Wire | None,
    ) -> None:
        exchange = Exchange(self.config.first_token_timeout_s, self.config.idle_timeout_s)
        watcher = asyncio.get_running_loop().create_task(watch_disconnect(receive, exchange))
        self.exchanges.add(exchange)
        self.metrics.active_streams += 1
        started = [False]  # the client has the response start: errors become SSE lines
        response: H1Response | None = None
        try:
            try:
                response, sent_at = await self.upstream.open(body, headers, exchange, fields)
                if stream:
                    await self._stream(
                        send, response, exchange, sent_at, strip_usage, extra, started, fields,
                        wire,
                    )  # fmt: skip
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
            self.metrics.client_disconnects.inc()
        except RelayError as error:
            fields["outcome"] = error.code
            if isinstance(error, UpstreamError):
                self.metrics.upstream_errors.labels(error.kind).inc()
            if not started[0]:
                fields["status"] = error.status
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
        response: H1Response,
        exchange: Exchange,
        sent_at: float,
        strip_usage: bool,
        extra: list[tuple[bytes, bytes]],
        started: list[bool],
        fields: dict[str, Any],
        wire: Wire | None,
    ) -> None:
        loop = exchange.loop
        stream_filter = StreamFilter(strip_usage)
        keepalive_s = self.config.keepalive_s
        chunks = response.aiter_raw()
        first = await self._first_chunk(send, chunks, exchange, keepalive_s, extra, started, fields)
        ttfb = time.perf_counter() - sent_at
        self.metrics.observe_ttfb(ttfb)
        fields["ttfb_ms"] = round(ttfb * 1000, 3)
        exchange.receiving()
        if not started[0]:
            fields["status"] = 200
            await send(
                {"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + extra}
            )
            started[0] = True
        # One message per upstream read, reused: the server reads it and keeps nothing.
        message = {"type": "http.response.body", "body": b"", "more_body": True}
        feed = stream_filter.feed
        # under uvicorn, reads that come while this task waits are forwarded by ``forward``
        forward = None if wire is None else Forward(feed, wire, exchange)
        try:
            out = feed(first)
            if out:
                message["body"] = out
                await send(message)
            # ``last`` is stamped after each write, so a slow write is not counted as upstream
            # idleness once it is done; a write blocked past the idle timeout (a client that
            # stopped reading) is cut by it.
            exchange.last = loop.time()
            await chunks.aclose()  # read on below, with the fast path
            async for chunk in response.aiter_raw(forward):
                if forward is not None:
                    if forward.held:  # the client's socket was full: send waits for the drain
                        message["body"], forward.held = forward.held, b""
                        await send(message)
                        exchange.last = loop.time()
                    if forward.failed is not None:
                        raise forward.failed
                if chunk:
                    out = feed(chunk)
                    if out:
                        message["body"] = out
                        await send(message)
                    exchange.last = loop.time()
        except UpstreamBroken as broken:
            if broken.forward:  # the valid events that came in the same read go out first
                message["body"] = broken.forward
                await send(message)
            raise
        finally:
            if forward is not None:  # once per stream, however it ended
                self.metrics.direct_writes += forward.writes
        stream_filter.finish()
        self._count_usage(stream_filter.usage, fields)
        exchange.finish()
        await send(END)
        fields["outcome"] = "ok"

    async def _first_chunk(
        self,
        send: Send,
        chunks: Any,
        exchange: Exchange,
        keepalive_s: float,
        extra: list[tuple[bytes, bytes]],
        started: list[bool],
        fields: dict[str, Any],
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
                    fields["status"] = 200
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 200,
                            "headers": SSE_HEADERS + extra,
                        }
                    )
                    started[0] = True
                await send(KEEPALIVE)
                next_at += keepalive_s
        finally:
            if not waiter.done():  # let the read end before the response is closed under it
                waiter.cancel()
                await asyncio.wait((waiter,))

    async def _complete(
        self,
        send: Send,
        response: H1Response,
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
        fields["status"] = 200
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        fields["outcome"] = "ok"

    def _count_usage(self, usage: object, fields: dict[str, Any]) -> None:
        if isinstance(usage, dict):
            self.metrics.add_usage(fields["principal"], usage)
            fields["tokens"] = usage.get("completion_tokens")


class _ClientLeft(Exception):
    """The client disconnected mid-request; nothing more is sent."""


CHAT_ROUTES = {"/v1/chat/completions": False, "/api/chat/stream": True}  # path -> classic
ROUTES = {**{path: "POST" for path in CHAT_ROUTES}, "/health": "GET", "/metrics": "GET"}


class RelayApp:
    """The relay as one pure ASGI callable: request id, CORS, auth, routing, access log."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.cors = CorsPolicy(relay.config.allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":  # nothing to set up: say so
                while (await receive())["type"] != "lifespan.shutdown":
                    await send({"type": "lifespan.startup.complete"})
                await send({"type": "lifespan.shutdown.complete"})
            return
        rid = request_id(scope)
        fields: dict[str, Any] = {"request_id": rid, "status": CLIENT_CLOSED}
        head = [(b"x-request-id", rid.encode())]
        started = time.perf_counter()
        try:
            await self._handle(scope, receive, send, head, fields)
        except Exception:
            log.exception("internal relay error", extra={"request_id": rid})
            if fields["status"] != CLIENT_CLOSED:
                raise  # the response had begun: the server cuts the connection
            error = RelayError("internal relay error")
            fields["status"] = error.status
            await send_json_error(send, error, head)
        finally:
            path = scope["path"]
            route = path if path in ROUTES else "other"
            self.relay.metrics.requests.labels(route, str(fields["status"])).inc()
            log_request(scope, fields.pop("request_id"), time.perf_counter() - started, fields)

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        head: list[tuple[bytes, bytes]],
        fields: dict[str, Any],
    ) -> None:
        path, method = scope["path"], scope["method"]
        origin = preflight_method = preflight_headers = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"access-control-request-method":
                preflight_method = value.decode("latin-1")
            elif name == b"access-control-request-headers":
                preflight_headers = value.decode("latin-1")
        if origin is not None:
            if method == "OPTIONS" and preflight_method is not None:
                try:
                    headers = self.cors.preflight(origin, preflight_method, preflight_headers)
                except RelayError as error:
                    await self._error(send, error, [*head, (b"vary", b"Origin")], fields)
                    return
                await self._respond(send, 204, head + headers, b"", fields)
                return
            head += self.cors.response_headers(origin)
        principal = None
        if method != "OPTIONS" and path.startswith(PROTECTED_PREFIXES):
            try:
                principal = self.relay.authenticator.authenticate(scope)
            except RelayError as error:
                await self._error(send, error, [*head, CHALLENGE], fields)
                return
        allowed = ROUTES.get(path)
        if allowed is None:
            await self._error(send, NotFound(f"no such path: {path}"), head, fields)
            return
        if method != allowed:
            error = MethodNotAllowed(f"{path} takes {allowed}, not {method}")
            await self._error(send, error, [*head, (b"allow", allowed.encode())], fields)
            return
        if path in CHAT_ROUTES:
            assert principal is not None
            await self.relay.chat(scope, receive, send, CHAT_ROUTES[path], principal, head, fields)
        elif path == "/health":
            await self._respond(send, 200, head + _JSON, orjson.dumps(self._health()), fields)
        else:
            text = self.relay.metrics.render()
            await self._respond(send, 200, head + _PROMETHEUS, text, fields)

    def _health(self) -> dict[str, Any]:
        relay = self.relay
        return {
            "status": "draining" if relay.draining else "ok",
            "pid": os.getpid(),
            "active_streams": relay.metrics.active_streams,
            "direct_writes": relay.metrics.direct_writes,  # chunks the fast path wrote
            "tasks": len(asyncio.all_tasks()),  # a leak of watchers or readers shows here
            "auth": relay.config.auth,
            "ratelimit_backend": relay.limiter.backend.name,
            "upstream_pool": relay.upstream.pool_state(),
        }

    @staticmethod
    async def _respond(
        send: Send,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        fields: dict[str, Any],
    ) -> None:
        if status != 204:
            headers = [*headers, (b"content-length", str(len(body)).encode())]
        fields["status"] = status
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _error(
        send: Send, error: RelayError, headers: list[tuple[bytes, bytes]], fields: dict[str, Any]
    ) -> None:
        fields["status"] = error.status
        fields["outcome"] = error.code
        await send_json_error(send, error, headers)


_JSON = [(b"content-type", b"application/json")]
_PROMETHEUS = [(b"content-type", CONTENT_TYPE.encode())]


def build_app(relay: Relay) -> RelayApp:
    return RelayApp(relay)
