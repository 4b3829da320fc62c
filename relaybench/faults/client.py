"""The scorecard's client: one chat request, and a faithful record of what the client saw.

Every request gets its own connection (a fresh ``httpx.AsyncClient``, sharing one verifying TLS
context), so leaving a request closes exactly that TCP connection and nothing is reused across
scenarios. The body is read as
it arrives (``aiter_raw``: transfer encoding undone, nothing else) and decoded with the
project's one SSE decoder. How the body ended is recorded as the client experienced it:

    complete   the response ended as HTTP framing says (chunked terminator / full length)
    cut        the connection broke first (the peer closed or reset it mid-body)
    timeout    the scorecard's own deadline passed first (the client gave up: a hang)
    left       the scenario closed the connection on purpose (a user who went away)
    refused    no connection at all

Durations come from ``perf_counter``; Unix-ns stamps (``time.time_ns``, the mock's clock) are
kept only where they are compared with the mock's log or its ``x_mock_emitted_ns`` stamps.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from relaybench.sse import ServerSentEvent, SSEDecoder

CHAT_PATH = "/chat/completions"


def chat_url(base: str) -> str:
    """``http://h:p`` and ``http://h:p/v1`` both name the same OpenAI-compatible base."""
    base = base.rstrip("/")
    return (base if base.endswith("/v1") else base + "/v1") + CHAT_PATH


def tag(directives: dict[str, object]) -> str:
    """The mock's message-tag form of ``directives``: ``[[mock fault=hang id=x]]``."""
    return "[[mock " + " ".join(f"{k}={v}" for k, v in directives.items()) + "]]"


def chat_body(directives: dict[str, object], *, stream: bool = True) -> dict[str, Any]:
    """A chat request whose last user message carries the mock's directives."""
    body: dict[str, Any] = {
        "model": "relaybench-mock",
        "messages": [{"role": "user", "content": f"relaybench fault scorecard {tag(directives)}"}],
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}  # the mock's bytes pass unchanged
    return body


@dataclass
class Seen:
    """What the client saw of one request. Durations in seconds from sending the request."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    events: list[ServerSentEvent] = field(default_factory=list)
    event_s: list[float] = field(default_factory=list)  # arrival of each event
    event_ns: list[int] = field(default_factory=list)  # the same, as Unix ns
    comments: int = 0
    reads: int = 0
    end: str = "refused"
    error: str | None = None  # the transport error, when there was one
    headers_s: float | None = None
    first_byte_s: float | None = None
    last_byte_s: float | None = None
    ended_s: float | None = None
    left_ns: int | None = None  # when the scenario closed the connection (Unix ns)
    partial: bool = False  # bytes after the last complete event (an unterminated block)

    # -- what the bytes mean ----------------------------------------------------------------

    @property
    def streamed(self) -> bool:
        return self.headers.get("content-type", "").startswith("text/event-stream")

    @property
    def done(self) -> bool:
        """``[DONE]`` arrived."""
        return any(e.data == "[DONE]" for e in self.events)

    def chunks(self) -> list[dict[str, Any]]:
        """The JSON objects among the data events (invalid JSON is skipped here)."""
        out = []
        for event in self.events:
            if event.data == "[DONE]":
                continue
            try:
                obj = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out

    @property
    def invalid_events(self) -> int:
        """Data events that are neither ``[DONE]`` nor a JSON object."""
        return sum(1 for e in self.events if e.data != "[DONE]" and not _is_object(e.data))

    @property
    def error_event(self) -> dict[str, Any] | None:
        """The first in-stream ``{"error": ...}`` event, if any."""
        for chunk in self.chunks():
            if "error" in chunk:
                return chunk
        return None

    @property
    def content(self) -> str:
        """The assistant text: the streamed deltas, or a non-streamed message."""
        if not self.streamed:
            answer = self.json()
            try:
                return answer["choices"][0]["message"]["content"] or ""
            except (KeyError, IndexError, TypeError):
                return ""
        parts = []
        for chunk in self.chunks():
            for choice in chunk.get("choices") or ():
                if isinstance(choice, dict):
                    delta = choice.get("delta") or {}
                    if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                        parts.append(delta["content"])
        return "".join(parts)

    @property
    def usage(self) -> dict[str, Any] | None:
        for chunk in self.chunks():
            if isinstance(chunk.get("usage"), dict):
                return chunk["usage"]
        return None

    def json(self) -> Any:
        """The body as JSON (``None`` when it is not JSON)."""
        try:
            return orjson.loads(bytes(self.body))
        except orjson.JSONDecodeError:
            return None

    @property
    def looks_complete(self) -> bool:
        """Would a client take this stream for a whole answer? ``[DONE]``, or a clean end
        with no error event (OpenAI's SDKs end a stream at EOF without complaint)."""
        if self.status != 200:
            return False
        if self.done:
            return True
        return self.end == "complete" and self.error_event is None and not self.partial

    def describe(self) -> str:
        """One line: what came back, in the client's terms (for a scenario's value)."""
        if self.status is None:
            return f"no response ({self.end}: {self.error or 'nothing'})"
        kind = self.headers.get("content-type", "?").split(";")[0]
        what = f"HTTP {self.status} {kind}"
        if self.streamed:
            what += f", {len(self.events)} events"
            if self.done:
                what += ", [DONE]"
            if (err := self.error_event) is not None:
                what += f", error event {_code(err)!r}"
        elif self.status != 200:
            body = self.json()
            what += f" {_code(body)!r}" if isinstance(body, dict) and "error" in body else ""
            if not isinstance(body, dict):
                what += f" body {bytes(self.body[:60])!r}"
        return what if self.end == "complete" else f"{what}; {_ENDS.get(self.end, self.end)}"


_ENDS = {"cut": "connection cut", "timeout": "the client gave up", "left": "the client left"}


def _is_object(data: str) -> bool:
    try:
        return isinstance(orjson.loads(data), dict)
    except orjson.JSONDecodeError:
        return False


def _code(obj: object) -> str:
    if isinstance(obj, dict) and isinstance(obj.get("error"), dict):
        err = obj["error"]
        return str(err.get("code") or err.get("type") or err.get("message"))
    return "?"


Leave = Callable[[Seen], Awaitable[None]]


class Client:
    """Sends chat requests to one OpenAI-compatible base URL, with an optional bearer key."""

    def __init__(self, base_url: str, api_key: str | None = None, model: str | None = None) -> None:
        self.url = chat_url(base_url)
        self.api_key = api_key
        self.model = model  # sent instead of the body's (gateways route by model name)

    def _headers(self) -> dict[str, str]:
        headers = {"accept-encoding": "identity", "content-type": "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        return headers

    async def chat(
        self,
        body: dict[str, Any],
        *,
        deadline_s: float,
        leave: Leave | None = None,
        on_event: Callable[[Seen], None] | None = None,
    ) -> Seen:
        """Send ``body``; read until the response ends, ``deadline_s`` passes, or ``leave``
        returns (then the connection is closed at once and ``left_ns`` stamped)."""
        if self.model:
            body = {**body, "model": self.model}
        seen = Seen()
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        reader = loop.create_task(self._read(body, seen, started, on_event))
        waiters: set[asyncio.Future[Any]] = {reader}
        leaver = loop.create_task(leave(seen)) if leave is not None else None
        if leaver is not None:
            waiters.add(leaver)
        try:
            done, _ = await asyncio.wait(
                waiters, timeout=deadline_s, return_when=asyncio.FIRST_COMPLETED
            )
            if reader not in done:
                if leaver is not None and leaver in done:
                    seen.left_ns = time.time_ns()
                    seen.end = "left"
                else:
                    seen.end = "timeout"
                reader.cancel()  # closes the client, hence the connection
                await asyncio.wait({reader})
                seen.ended_s = time.perf_counter() - started
            elif (exc := reader.exception()) is not None:
                raise exc
        finally:
            for task in waiters:
                if not task.done():
                    task.cancel()
            await asyncio.wait(waiters)
        return seen

    async def _read(
        self,
        body: dict[str, Any],
        seen: Seen,
        started: float,
        on_event: Callable[[Seen], None] | None,
    ) -> None:
        decoder = SSEDecoder()
        clock = time.perf_counter
        timeout = httpx.Timeout(None)  # the caller's deadline is the only timeout
        async with httpx.AsyncClient(timeout=timeout, verify=tls_context()) as client:
            try:
                async with client.stream(
                    "POST", self.url, content=orjson.dumps(body), headers=self._headers()
                ) as response:
                    seen.headers_s = clock() - started
                    seen.status = response.status_code
                    seen.headers = {k.lower(): v for k, v in response.headers.items()}
                    seen.end = "cut"  # until the body is known to have ended properly
                    async for chunk in response.aiter_raw():
                        now = clock() - started
                        if seen.first_byte_s is None:
                            seen.first_byte_s = now
                        seen.last_byte_s = now
                        seen.reads += 1
                        seen.body += chunk
                        events = decoder.feed(chunk)
                        if events:
                            ns = time.time_ns()
                            seen.events += events
                            seen.event_s += [now] * len(events)
                            seen.event_ns += [ns] * len(events)
                            if on_event is not None:
                                on_event(seen)
                        seen.comments = decoder.comments
                    seen.end = "complete"
            except httpx.ConnectError as exc:
                seen.end, seen.error = "refused", _why(exc)
            except httpx.TransportError as exc:  # cut mid-body, or before the status line
                seen.end, seen.error = "cut", _why(exc)
            finally:
                seen.partial = decoder.has_partial_event
                if seen.ended_s is None:
                    seen.ended_s = clock() - started


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every request: building one costs ~50 ms of CPU."""
    return httpx.create_ssl_context()


def _why(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
