"""``POST /v1/chat/completions`` and ``POST /v1/completions``: a raw ASGI endpoint.

Raw ASGI (not a StreamingResponse) so that each chunk is exactly one write (one
``http.response.body`` send, or one direct write by the emitter) and a client's
``http.disconnect`` is seen at once: a watcher task waits on ``receive()`` and cancels the
generating task the moment the client goes away.

Timing: every chunk has an absolute deadline on the monotonic clock (``admitted + TTFT`` for the
first, then ``previous deadline + gap``); ``mock_upstream.emitter`` writes it when it is due,
stamped with ``time.time_ns()`` right before the write, and records ``monotonic() - deadline``
as lateness. Every request gets an entry in the request log (``mock_upstream.history``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from typing import Any

import orjson

from mock_upstream import content
from mock_upstream.config import MAX_BODY_BYTES, MAX_DRAIN_BYTES
from mock_upstream.emitter import Emission
from mock_upstream.errors import ApiError, BadRequest, ConnectionCut, TooLarge
from mock_upstream.faults import MID_STREAM, Fault, draw_fault
from mock_upstream.history import Entry
from mock_upstream.latency import Plan, make_plan
from mock_upstream.load import QueueFull, slowdown_factor
from mock_upstream.state import MockState
from mock_upstream.validation import CompletionRequest, Overrides, parse_body, parse_overrides
from relaybench import asgi
from relaybench.wire import Wire, wire_of

Scope = dict[str, Any]
Receive = Any
Send = Any

_JSON_HEADERS = [(b"content-type", b"application/json")]
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]


_SHUTTING_DOWN = ApiError(
    503, "the mock is shutting down", type_="server_error", code="shutting_down"
)


class _Watch:
    """Waits for ``http.disconnect`` and cancels the request's task if it is still working."""

    __slots__ = ("disconnected", "done", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.disconnected = False
        self.done = False

    async def run(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
        if not self.done:
            self.disconnected = True
            self.task.cancel()


async def _read_body(scope: Scope, receive: Receive) -> bytes:
    """The whole request body; the shared reader's refusals become the mock's API errors."""
    try:
        return await asgi.read_body(scope, receive, MAX_BODY_BYTES, drain=MAX_DRAIN_BYTES)
    except asgi.BodyTooLarge as exc:
        raise TooLarge(MAX_BODY_BYTES, drained=exc.drained) from None
    except asgi.BadContentLength as exc:
        raise BadRequest(str(exc), param="Content-Length") from None


async def send_json(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    entry: Entry | None = None,
    ns: int | None = None,
) -> None:
    """A whole JSON answer; ``entry`` logs it as written at ``ns`` (default: now)."""
    if entry is not None:
        entry.status = status
        entry.wrote(len(body), time.time_ns() if ns is None else ns)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *_JSON_HEADERS,
                (b"content-length", b"%d" % len(body)),
                *(headers or ()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_error(send: Send, exc: ApiError, entry: Entry | None = None) -> None:
    await send_json(send, exc.status, exc.body(), list(exc.headers), entry)


def _request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"x-request-id":
            return value.decode("latin-1")
    return None


def _chunk_gaps(plan: Plan, per_chunk: int) -> list[float]:
    """Gaps between chunk emissions: a chunk leaves when its last token is generated."""
    if per_chunk <= 1:
        return list(plan.gaps_s)
    offsets = [0.0]
    for gap in plan.gaps_s:
        offsets.append(offsets[-1] + gap)
    n = len(plan.tokens)
    ends = [offsets[min(k + per_chunk, n) - 1] for k in range(0, n, per_chunk)]
    return [b - a for a, b in itertools.pairwise(ends)]


class Completions:
    """The completions endpoint; ``chat`` selects chat completions, else legacy completions."""

    def __init__(self, state: MockState, *, chat: bool) -> None:
        self.state = state
        self.chat = chat
        self.prefix = "chatcmpl-mock" if chat else "cmpl-mock"
        if state.config.workers > 1:  # ids stay unique across the workers' own sequences
            self.prefix += f"-w{state.config.worker_index}-"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        arrived_ns = time.time_ns()
        arrived = b"%d" % arrived_ns
        state = self.state
        stats = state.stats
        cfg = state.config
        stats.requests += 1
        entry = state.history.open(arrived_ns, _request_id(scope["headers"]))
        try:
            req = parse_body(await _read_body(scope, receive), chat=self.chat)
            overrides = parse_overrides(scope["headers"], req.tag)
        except ApiError as exc:
            stats.bad_requests += 1
            await send_error(send, exc, entry)
            entry.finish("error")
            return
        except asgi.ClientDisconnected:
            stats.cancelled += 1
            entry.finish("cancelled")
            return
        entry.id = overrides.tag_id
        entry.stream = req.stream
        seq = state.next_seq()
        seed = overrides.seed if overrides.seed is not None else state.request_seed(seq)
        plan, fault = self._plan(req, overrides, seed)
        rid = f"{self.prefix}{seq:08d}"
        if fault is not None:
            entry.fault = fault.text
            if fault.kind == "status":
                stats.faults[fault.label] += 1
                stats.faulted += 1
                await send_error(send, _status_fault(fault.value, cfg.retry_after_s), entry)
                entry.finish("faulted")
                return
            if fault.kind == "hang":
                stats.faults[fault.label] += 1
                await self._hang(receive, send, entry)
                return
        try:
            waiter = state.admission.admit()
        except QueueFull:
            stats.rejected += 1
            await send_error(
                send,
                ApiError(
                    429,
                    "the mock's queue is full (--max-queue); retry later",
                    type_="rate_limit_error",
                    code="queue_full",
                    headers=((b"retry-after", str(cfg.retry_after_s).encode()),),
                ),
                entry,
            )
            entry.finish("error")
            return
        task = asyncio.current_task()
        assert task is not None
        watch = _Watch(task)
        watcher = asyncio.ensure_future(watch.run(receive))
        admitted = waiter is None
        streaming = req.stream
        try:
            if streaming:
                stats.active_streams += 1
                entry.status = 200
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [
                            *_SSE_HEADERS,
                            (b"x-request-id", rid.encode()),
                            (b"x-mock-seed", b"%d" % seed),
                            (b"x-mock-arrived-ns", arrived),
                        ],
                    }
                )
            opened = time.monotonic()
            if waiter is not None:
                try:
                    await waiter
                except asyncio.CancelledError:
                    state.admission.abandon(waiter)  # hands on a slot it was just given
                    raise
                admitted = True
            start = time.monotonic()
            if streaming:
                wire = wire_of(scope)
                end = await self._stream(send, entry, req, plan, fault, rid, start, opened, wire)
            else:
                end = await self._whole(send, entry, req, plan, fault, rid, seed, start, arrived)
            watch.done = True
            if end == "completed":
                stats.completed += 1
            else:
                stats.faulted += 1
            entry.finish(end)
        except ConnectionCut:  # the disconnect-after fault
            stats.faulted += 1
            entry.finish("faulted")
            raise
        except asyncio.CancelledError:
            watch.done = True
            stats.cancelled += 1
            task.uncancel()
            if watch.disconnected:
                entry.finish("cancelled")
                return
            entry.finish("error")
            # the server is shutting down: close the stream, or answer a waiting request
            if streaming:
                raise ConnectionCut from None
            with contextlib.suppress(RuntimeError):  # uvicorn's answer if we had started one
                await send_error(send, _SHUTTING_DOWN, entry)
        finally:
            watch.done = True
            if not watcher.done():
                watcher.cancel()
            if streaming:
                stats.active_streams -= 1
            if admitted:
                state.admission.release()

    async def _hang(self, receive: Receive, send: Send, entry: Entry) -> None:
        """The ``hang`` fault: send nothing, not even a status line, until the client leaves."""
        task = asyncio.current_task()
        assert task is not None
        watch = _Watch(task)
        watcher = asyncio.ensure_future(watch.run(receive))
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            task.uncancel()
            self.state.stats.faulted += 1
            if not watch.disconnected:  # the server is stopping: say so rather than a bare 500
                with contextlib.suppress(RuntimeError):
                    await send_error(send, _SHUTTING_DOWN, entry)
            entry.finish("faulted")
        finally:
            watch.done = True
            if not watcher.done():
                watcher.cancel()

    def _plan(self, req: CompletionRequest, ov: Overrides, seed: int) -> tuple[Plan, Fault | None]:
        cfg = self.state.config
        rng = random.Random(seed)
        ttft = cfg.ttft_ms if ov.ttft_ms is None else cfg.ttft_ms.with_mean(ov.ttft_ms)
        itl = cfg.itl_ms if ov.itl_ms is None else cfg.itl_ms.with_mean(ov.itl_ms)
        plan = make_plan(
            rng,
            seed=seed,
            ttft_ms=ttft,
            itl_ms=itl,
            output_tokens=cfg.output_tokens,
            vocab_size=len(content.VOCAB),
            prompt_tokens=req.prompt_tokens,
            prefill_ms_per_token=cfg.prefill_ms_per_token,
            max_tokens=req.max_tokens,
            use_max_tokens=cfg.use_max_tokens,
            fixed_output_tokens=ov.output_tokens,
        )
        if ov.fault is not None:
            return plan, ov.fault
        n_chunks = -(-len(plan.tokens) // max(1, cfg.tokens_per_chunk))
        return plan, draw_fault(rng, cfg.fault_rates, n_chunks)

    def _usage(self, req: CompletionRequest, plan: Plan) -> dict[str, int]:
        n = len(plan.tokens)
        return {
            "prompt_tokens": req.prompt_tokens,
            "completion_tokens": n,
            "total_tokens": req.prompt_tokens + n,
        }

    async def _stream(
        self,
        send: Send,
        entry: Entry,
        req: CompletionRequest,
        plan: Plan,
        fault: Fault | None,
        rid: str,
        start: float,
        opened: float,
        wire: Wire | None,
    ) -> str:
        """Send the stream; returns how it ended (``completed``, or ``faulted`` for no-done)."""
        state = self.state
        cfg = state.config
        stats = state.stats
        templates = content.ChunkTemplates(
            chat=self.chat,
            id_=rid,
            created=int(time.time()),
            model=req.model or cfg.model,
            crlf=cfg.crlf,
        )
        keepalive = cfg.keepalive_ms / 1000.0
        next_keepalive = opened + keepalive
        if keepalive:  # on the grid that began with the headers; none owed for a queue wait
            next_keepalive += keepalive * max(0, (start - next_keepalive) // keepalive + 1)
        emission = Emission(
            state.emitter(),
            wire,
            templates=templates,
            chat=self.chat,
            bodies=content.chunk_bodies(plan.tokens, cfg.tokens_per_chunk),
            gaps=_chunk_gaps(plan, cfg.tokens_per_chunk),
            fault=fault,
            fault_at=fault.value if fault is not None and fault.kind in MID_STREAM else -1,
            start=start,
            ttft_s=plan.ttft_s,
            keepalive_s=keepalive,
            next_keepalive=next_keepalive,
            slowdown=(cfg.slowdown_per_stream, cfg.slowdown_after),
            admission=state.admission,
            stats=stats,
            entry=entry,
        )
        await emission.run(send)
        ns = time.time_ns()
        tail = templates.final(plan.finish_reason, ns)
        if req.include_usage:
            tail += templates.usage(self._usage(req, plan), ns)
        end = "completed"
        if fault is not None and fault.kind == "no-done":
            stats.faults[fault.label] += 1
            end = "faulted"
        else:
            tail += templates.done
        entry.wrote(len(tail), ns)
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        return end

    async def _whole(
        self,
        send: Send,
        entry: Entry,
        req: CompletionRequest,
        plan: Plan,
        fault: Fault | None,
        rid: str,
        seed: int,
        start: float,
        arrived: bytes,
    ) -> str:
        """Non-streaming: answer once the whole simulated generation is over (``no-done``: a
        stream-only fault, changes nothing here); returns how it ended."""
        cfg = self.state.config
        loop = asyncio.get_running_loop()
        factor = slowdown_factor(
            self.state.admission.active, cfg.slowdown_per_stream, cfg.slowdown_after
        )
        first = start + plan.ttft_s
        offsets = [first]
        for gap in plan.gaps_s:
            offsets.append(offsets[-1] + gap * factor)
        n_chunks = -(-len(plan.tokens) // max(1, cfg.tokens_per_chunk))
        if fault is not None and fault.kind in MID_STREAM and fault.value <= n_chunks:
            cut_at = offsets[min(len(offsets) - 1, fault.value * max(1, cfg.tokens_per_chunk))]
            await asyncio.sleep(max(0.0, cut_at - loop.time()))
            self.state.stats.faults[fault.label] += 1
            if fault.kind == "stall":
                await loop.create_future()
            partial = b'{"id":"%s","choices":[{"message":' % rid.encode()
            if fault.kind == "malformed":
                await send_json(send, 200, partial, None, entry)
                return "faulted"
            # a cut: promise a body, send part of it, then drop the connection
            entry.status = 200
            entry.wrote(len(partial), time.time_ns())
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [*_JSON_HEADERS, (b"content-length", b"%d" % (4 * len(partial)))],
                }
            )
            await send({"type": "http.response.body", "body": partial, "more_body": True})
            raise ConnectionCut
        end = offsets[-1]
        await asyncio.sleep(max(0.0, end - loop.time()))
        text = content.text_of(plan.tokens)
        model = req.model or cfg.model
        if self.chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": plan.finish_reason,
            }
        else:
            choice = {
                "text": text,
                "index": 0,
                "logprobs": None,
                "finish_reason": plan.finish_reason,
            }
        lateness_now = time.monotonic()
        ns = time.time_ns()
        body = {
            "id": rid,
            "object": "chat.completion" if self.chat else "text_completion",
            "created": int(time.time()),
            "model": model,
            "choices": [choice],
            "usage": self._usage(req, plan),
            "x_mock_emitted_ns": ns,
        }
        if self.chat:
            body["system_fingerprint"] = "fp_mock"
        self.state.stats.lateness.add(lateness_now - end)
        headers = [(b"x-mock-seed", b"%d" % seed), (b"x-mock-arrived-ns", arrived)]
        await send_json(send, 200, orjson.dumps(body), headers, entry, ns)
        return "completed"


def _status_fault(code: int, retry_after_s: int) -> ApiError:
    headers = ((b"retry-after", str(retry_after_s).encode()),) if code == 429 else ()
    type_ = {429: "rate_limit_error", 401: "authentication_error"}.get(code, "mock_fault")
    if code >= 500:
        type_ = "server_error"
    return ApiError(
        code, f"mock fault injected: status {code}", type_=type_, code="mock_fault", headers=headers
    )
