"""The fault suite as data: each scenario's requests, what it measures, and how it is judged.

A scenario sends a few requests through the target with the mock's directives in the last user
message (``[[mock fault=... id=...]]``: relays forward messages, not always custom headers), reads
what the client saw (``client.Seen``) and what reached the upstream (the mock's request log), and
returns a ``Result``: PASS, FAIL or INFO (not judged: skipped, or a figure for information) with
the measured value. ``figures`` carries the numbers the headline totals are made of:

    hang_s               how long the client waited for an error it should have had at once
    truncated            a broken stream the client received as a complete answer
    duplicated           content the client got twice because the relay re-sent after bytes
    cancel_ms            the client left -> the mock saw its upstream request end

Scenarios that need an upstream of the harness's own (a closed port, the scripted wire
upstream) run only when the harness started the relay; for external targets they are INFO,
skipped.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from relaybench.faults import wire
from relaybench.faults.client import Client, Seen, chat_body
from relaybench.faults.mocklog import MockLog, resent_after_bytes
from relaybench.sse import SSEDecoder

PASS, FAIL, INFO = "PASS", "FAIL", "INFO"

SHORT = {"ttft-ms": 50, "itl-ms": 10, "output-tokens": 12}  # a ~0.2 s stream
LONG = {"ttft-ms": 50, "itl-ms": 10, "output-tokens": 3000}  # 30 s: outlives any scenario
SLOW_TTFT_MS = 3000
CANCEL_LIMIT_MS = 2000.0  # a relay should drop the upstream request well within this
CANCEL_WATCH_S = 5.0  # how long the scorecard watches the mock log after the client left
MOCK_RETRY_AFTER_S = 1.0  # the Retry-After of the mock's 429s (its --retry-after-s)
MAX_ATTEMPTS = 5  # more upstream attempts than this for one request is a retry storm
UPSTREAM_BODY = "mock fault injected"  # the mock's error message: must not reach the client


class AuthRequired(Exception):
    """The clean stream got 401: the target needs a (valid) API key."""


class NotThroughMock(Exception):
    """The clean stream never reached the mock: the target's upstream is something else."""


@dataclass
class Result:
    name: str
    verdict: str
    value: str
    detail: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": SCENARIOS[self.name].title if self.name in SCENARIOS else self.name,
            "verdict": self.verdict,
            "value": self.value,
            "detail": self.detail,
            "figures": self.figures,
            "duration_s": round(self.duration_s, 3),
        }


@dataclass
class Context:
    """What scenarios share: the target's client, the mock (direct and its log), the limits."""

    target: Client
    mock: Client
    log: MockLog
    run_id: str
    max_hang_s: float
    down: Client | None = None  # a relay in front of a closed port (harness-started only)
    wire: Client | None = None  # a relay in front of the scripted wire upstream
    wire_server: wire.WireUpstream | None = None
    secrets: tuple[str, ...] = ()  # strings no client answer may contain (the upstream key)
    _references: dict[int, asyncio.Task[Seen]] = field(default_factory=dict)
    _ids: int = 0

    def new_id(self, name: str) -> str:
        self._ids += 1
        return f"{self.run_id}-{name}-{self._ids}"

    async def send(
        self, name: str, directives: dict[str, object], *, stream: bool = True, **kw: Any
    ) -> tuple[str, Seen]:
        """One request through the target, tagged with a fresh id; returns (id, what was seen)."""
        request_id = self.new_id(name)
        body = chat_body({**directives, "id": request_id}, stream=stream)
        kw.setdefault("deadline_s", self.max_hang_s)
        return request_id, await self.target.chat(body, **kw)

    def reference(self, seed: int, directives: dict[str, object]) -> Awaitable[Seen]:
        """The stream the mock sends for ``seed`` (same directives, no fault), asked directly."""
        if seed not in self._references:
            clean = {k: v for k, v in directives.items() if k != "fault"}
            body = chat_body({**clean, "seed": seed, "id": self.new_id("reference")})

            async def fetch() -> Seen:
                seen = await self.mock.chat(body, deadline_s=30.0)
                if not seen.done:
                    raise RuntimeError(f"the mock's reference stream failed: {seen.describe()}")
                return seen

            self._references[seed] = asyncio.ensure_future(fetch())
        return asyncio.shield(self._references[seed])


# What differs between two streams of one seed: ids, times, and the prompt's size (the tag's id).
_PER_REQUEST = re.compile(
    rb'("id":"[^"]*"|"created":\d+|"x_mock_emitted_ns":\d+|"(?:prompt|total)_tokens":\d+)'
)


def same_bytes(a: bytes | bytearray, b: bytes | bytearray) -> bool:
    """Byte-identical streams, once the per-request values are blanked out."""

    def blank(m: re.Match[bytes]) -> bytes:
        return m.group(1).split(b":")[0] + b":_"

    return _PER_REQUEST.sub(blank, bytes(a)) == _PER_REQUEST.sub(blank, bytes(b))


Run = Callable[[Context], Awaitable[Result]]


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    why: str
    run: Run
    needs: str = ""  # "harness": only when the harness started the relay itself


SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str, title: str, why: str, needs: str = "") -> Callable[[Run], Run]:
    def register(run: Run) -> Run:
        SCENARIOS[name] = Scenario(name, title, why, run, needs)
        return run

    return register


# -- helpers ----------------------------------------------------------------------------------


def _error_status(seen: Seen) -> bool:
    return seen.status is not None and seen.status >= 400


def _json_error(seen: Seen) -> bool:
    body = seen.json()
    return isinstance(body, dict) and isinstance(body.get("error"), dict)


def _time_to_error(seen: Seen) -> float:
    """When the client knew the request failed: its status, or the end of the error stream."""
    if seen.end == "timeout" or seen.ended_s is None:
        return seen.ended_s or 0.0
    if seen.status != 200 and seen.headers_s is not None:
        return seen.headers_s
    return seen.ended_s


def _gaps_s(found: list[dict[str, Any]]) -> list[float]:
    return [(b["arrived_ns"] - a["arrived_ns"]) / 1e9 for a, b in itertools.pairwise(found)]


def _attempts(found: list[dict[str, Any]]) -> str:
    if len(found) <= 1:
        return f"{len(found)} upstream attempt" + ("" if len(found) == 1 else "s")
    gaps = _gaps_s(found)
    return f"{len(found)} upstream attempts, {min(gaps):.2f}-{max(gaps):.2f} s apart"


def content_chunks(seen: Seen) -> int:
    """Chunks that carried text (the role chunk's empty content does not count)."""
    return sum(
        1
        for chunk in seen.chunks()
        for choice in chunk.get("choices") or ()
        if isinstance(choice, dict) and ((choice.get("delta") or {}).get("content") or "")
    )


def _what_stream_got(seen: Seen) -> str:
    """How a broken stream reached the client."""
    n = content_chunks(seen)
    if seen.status != 200:
        return seen.describe()
    if (err := seen.error_event) is not None:
        code = err["error"].get("code") if isinstance(err["error"], dict) else err["error"]
        how = f"error event {code!r}"
    elif seen.end == "cut":
        how = "connection cut"
    elif seen.end == "timeout":
        how = f"nothing more until the client gave up at {seen.ended_s:.1f} s"
    elif seen.done:
        how = "[DONE]: it looked complete"
    else:
        how = "clean end, no error: it looked complete"
    return f"{n} chunks, then {how}"


async def _judge_broken_stream(
    ctx: Context, name: str, directives: dict[str, object], seed: int, *, lossless: bool = False
) -> Result:
    """A stream the mock breaks: it must never reach the client as a complete answer.

    ``lossless``: the fault loses no content (a malformed extra line), so a complete-looking
    answer is a lie only when its content differs from what the mock generated.
    """
    reference_text = ctx.reference(seed, directives)  # fetched meanwhile
    request_id, seen = await ctx.send(name, {**directives, "seed": seed})
    reference = (await reference_text).content
    found = await ctx.log.settled(request_id, 2.0)
    truncated = seen.looks_complete and (not lossless or seen.content != reference)
    duplicated = resent_after_bytes(found) > 0 and not reference.startswith(seen.content)
    quiet_s = seen.ended_s - (seen.last_byte_s or 0.0) if seen.ended_s is not None else 0.0
    figures = {
        "truncated": truncated,
        "duplicated": duplicated,
        "hang_s": round(quiet_s, 3),  # with gave_up: a lower bound (the wait went on)
        "gave_up": seen.end == "timeout",
        "last_byte_s": seen.last_byte_s,
        "attempts": len(found),
    }
    value = _what_stream_got(seen)
    if found:
        value += f" (the mock sent {found[0].get('chunks_sent')} chunks)"
    if truncated:
        return Result(name, FAIL, value, "a broken stream reached the client as complete", figures)
    if duplicated:
        return Result(name, FAIL, value, "the relay re-sent after bytes: content doubled", figures)
    if seen.end == "timeout":
        return Result(name, FAIL, value, f"no error within {ctx.max_hang_s:g} s", figures)
    return Result(name, PASS, value, seen.describe(), figures)


async def _judge_status(ctx: Context, name: str, code: int) -> Result:
    """An upstream error status: an honest error, quickly, without a retry storm."""
    request_id, seen = await ctx.send(name, {**SHORT, "fault": f"status:{code}"})
    found = await ctx.log.settled(request_id, 2.0)
    took = _time_to_error(seen)
    figures: dict[str, Any] = {
        "status": seen.status,
        "hang_s": round(took, 3),
        "gave_up": seen.end == "timeout",
        "attempts": len(found),
        "retry_after": seen.headers.get("retry-after"),
    }
    value = f"{seen.status} after {took:.2f} s; {_attempts(found)}"
    problems = []
    if not _error_status(seen):
        problems.append(f"the client got {seen.describe()}, not an error")
    elif not _json_error(seen):
        problems.append(f"the error is not an OpenAI JSON error: {bytes(seen.body[:80])!r}")
    if len(found) > MAX_ATTEMPTS:
        problems.append(f"{len(found)} upstream attempts: a retry storm")
    if seen.end == "timeout":
        problems.append(f"no answer within {ctx.max_hang_s:g} s")
    return Result(name, FAIL if problems else PASS, value, "; ".join(problems), figures)


# -- the suite --------------------------------------------------------------------------------


@scenario(
    "clean_stream",
    "clean stream",
    "The baseline: every token the mock sent arrives, byte for byte, then usage and [DONE].",
)
async def clean_stream(ctx: Context) -> Result:
    seed = 101
    reference_text = ctx.reference(seed, SHORT)
    request_id, seen = await ctx.send("clean_stream", {**SHORT, "seed": seed})
    if seen.status == 401:
        raise AuthRequired(seen.describe())
    if seen.status is None:
        return Result("clean_stream", FAIL, seen.describe(), "no HTTP answer")
    found = await ctx.log.settled(request_id, 2.0)
    if seen.status == 200 and not found:
        raise NotThroughMock(seen.describe())
    direct = await reference_text
    reference = direct.content
    usage = seen.usage or {}
    problems = []
    if seen.status != 200 or not seen.streamed:
        problems.append(f"got {seen.describe()}: not an OpenAI SSE stream")
    else:
        if seen.content != reference:
            problems.append(
                f"content differs from what the mock sent ({len(seen.content)} vs "
                f"{len(reference)} characters)"
            )
        if not seen.done or seen.events[-1].data != "[DONE]":
            problems.append("no [DONE] at the end")
        if usage.get("completion_tokens") != SHORT["output-tokens"]:
            problems.append(f"usage {usage or 'missing'}, expected 12 completion tokens")
        if seen.invalid_events or seen.error_event:
            problems.append("invalid or error events in a clean stream")
    sent = found[0].get("bytes_sent") if found else None
    exact = sent == len(seen.body) and same_bytes(seen.body, direct.body)
    value = (
        f"{len(reference)} characters identical, [DONE], usage {usage.get('completion_tokens')}; "
        + (
            "stream bytes identical to the mock's (ids and stamps aside)"
            if exact
            else f"same events, not the same bytes ({len(seen.body)} of the mock's {sent})"
        )
        if not problems
        else seen.describe()
    )
    figures = {"byte_exact": exact, "bytes": len(seen.body), "mock_bytes": sent}
    return Result("clean_stream", FAIL if problems else PASS, value, "; ".join(problems), figures)


@scenario(
    "status_429_retry_after",
    "upstream 429 with Retry-After",
    "A rate-limited upstream asks for a pause: the relay may wait it out, but must not hammer the "
    "upstream sooner, and the client must get a 429 that keeps the Retry-After.",
)
async def status_429_retry_after(ctx: Context) -> Result:
    request_id, seen = await ctx.send("status_429_retry_after", {**SHORT, "fault": "status:429"})
    found = await ctx.log.settled(request_id, 2.0)
    took = _time_to_error(seen)
    retry_after = seen.headers.get("retry-after")
    figures = {
        "status": seen.status,
        "hang_s": round(took, 3),
        "gave_up": seen.end == "timeout",
        "attempts": len(found),
        "retry_after": retry_after,
    }
    value = f"{seen.status} Retry-After {retry_after} after {took:.2f} s; {_attempts(found)}"
    problems = []
    if not _error_status(seen) or not _json_error(seen):
        problems.append(f"the client got {seen.describe()}")
    elif seen.status == 429 and retry_after is None:
        problems.append("a 429 without the upstream's Retry-After")
    if any(gap < MOCK_RETRY_AFTER_S * 0.9 for gap in _gaps_s(found)):
        problems.append(
            f"re-sent sooner than the upstream's Retry-After ({MOCK_RETRY_AFTER_S:g} s)"
        )
    if len(found) > MAX_ATTEMPTS:
        problems.append(f"{len(found)} upstream attempts: a retry storm")
    return Result(
        "status_429_retry_after", FAIL if problems else PASS, value, "; ".join(problems), figures
    )


@scenario(
    "status_429_no_retry_after",
    "upstream 429 without Retry-After",
    "With no Retry-After the relay must choose its own backoff: a few spaced attempts, then a 429 "
    "or 503 to the client; never a tight retry loop.",
    needs="harness",
)
async def status_429_no_retry_after(ctx: Context) -> Result:
    assert ctx.wire is not None and ctx.wire_server is not None
    name = "status_429_no_retry_after"
    ctx.wire_server.arrivals.pop("429", None)
    seen = await ctx.wire.chat(wire_body("429"), deadline_s=ctx.max_hang_s)
    stamps = ctx.wire_server.arrivals.get("429", [])
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    took = _time_to_error(seen)
    figures = {
        "status": seen.status,
        "hang_s": round(took, 3),
        "gave_up": seen.end == "timeout",
        "attempts": len(stamps),
    }
    spacing = f", {min(gaps):.2f}-{max(gaps):.2f} s apart" if gaps else ""
    value = f"{seen.status} after {took:.2f} s; {len(stamps)} upstream attempts{spacing}"
    problems = []
    if not _error_status(seen) or not _json_error(seen):
        problems.append(f"the client got {seen.describe()}")
    if len(stamps) > MAX_ATTEMPTS:
        problems.append(f"{len(stamps)} upstream attempts: a retry storm")
    if gaps and min(gaps) < 0.01:
        problems.append("retried with no backoff")
    return Result(name, FAIL if problems else PASS, value, "; ".join(problems), figures)


@scenario(
    "status_500",
    "upstream 500",
    "An upstream crash must reach the client as a 5xx JSON error, quickly.",
)
async def status_500(ctx: Context) -> Result:
    return await _judge_status(ctx, "status_500", 500)


@scenario(
    "status_503",
    "upstream 503",
    "An overloaded upstream: a bounded number of spaced retries at most, then a 5xx JSON error.",
)
async def status_503(ctx: Context) -> Result:
    return await _judge_status(ctx, "status_503", 503)


@scenario(
    "status_400",
    "upstream 400",
    "The request itself is bad: the client must get the 400 (it can fix its request), and the "
    "relay must never retry it (it would fail the same way, at a cost).",
)
async def status_400(ctx: Context) -> Result:
    result = await _judge_status(ctx, "status_400", 400)
    problems = [result.detail] if result.detail else []
    if result.figures["status"] != 400:
        problems.append(f"the client got {result.figures['status']}, not the upstream's 400")
    if result.figures["attempts"] != 1:
        problems.append(f"retried: {result.figures['attempts']} upstream attempts")
    result.verdict = FAIL if problems else PASS
    result.detail = "; ".join(p for p in problems if p)
    return result


async def _judge_auth(ctx: Context, name: str, code: int) -> Result:
    _, seen = await ctx.send(name, {**SHORT, "fault": f"status:{code}"})
    text = bytes(seen.body).decode("utf-8", "replace") + " ".join(seen.headers.values())
    echoed = [what for what in (UPSTREAM_BODY, *ctx.secrets) if what and what in text]
    figures = {"status": seen.status, "echoed_upstream": bool(echoed)}
    value = seen.describe()
    problems = []
    if not _error_status(seen):
        problems.append("the client did not get an error")
    if UPSTREAM_BODY in echoed:
        problems.append("the upstream's error body reached the client")
    if len(echoed) > (UPSTREAM_BODY in echoed):
        problems.append("the relay's upstream key reached the client")
    checked = (
        "neither the upstream's body nor the relay's key"
        if ctx.secrets
        else "not the upstream's body"
    )
    detail = "; ".join(problems) if problems else f"the answer holds {checked}"
    if seen.status == 401:
        detail += "; a 401 tells the client that its own key failed"
    return Result(name, FAIL if problems else PASS, value, detail, figures)


@scenario(
    "status_401",
    "upstream 401",
    "The relay's own provider key was refused: the client gets an error, but never the upstream's "
    "body (which may quote the key) and never the key.",
)
async def status_401(ctx: Context) -> Result:
    return await _judge_auth(ctx, "status_401", 401)


@scenario(
    "status_403",
    "upstream 403",
    "Like 401: the provider refused the relay's credentials; nothing of them may leak.",
)
async def status_403(ctx: Context) -> Result:
    return await _judge_auth(ctx, "status_403", 403)


@scenario(
    "upstream_down",
    "upstream down",
    "Nothing listens upstream: the client must get a 5xx error at once, not wait.",
    needs="harness",
)
async def upstream_down(ctx: Context) -> Result:
    assert ctx.down is not None
    body = chat_body({**SHORT, "id": ctx.new_id("upstream_down")})
    seen = await ctx.down.chat(body, deadline_s=ctx.max_hang_s)
    took = _time_to_error(seen)
    figures = {"status": seen.status, "hang_s": round(took, 3), "gave_up": seen.end == "timeout"}
    value = f"{seen.status} after {took:.2f} s"
    ok = _error_status(seen) and _json_error(seen) and seen.end != "timeout"
    detail = "" if ok else f"the client got {seen.describe()}"
    return Result("upstream_down", PASS if ok else FAIL, value, detail, figures)


@scenario(
    "hang",
    "upstream accepts, never answers",
    "The upstream took the request and never sent a status line: the relay's first-byte timeout "
    "is the user's wait. Gateways have been seen hanging users for minutes here.",
)
async def hang(ctx: Context) -> Result:
    _, seen = await ctx.send("hang", {**SHORT, "fault": "hang"})
    took = _time_to_error(seen)
    figures = {
        "status": seen.status,
        "hang_s": round(took, 3),
        "gave_up": seen.end == "timeout",
        "truncated": seen.looks_complete,
    }
    if seen.end == "timeout":
        return Result(
            "hang", FAIL, f"no answer after {took:.1f} s (the client gave up)", "", figures
        )
    value = f"{seen.status} after {took:.2f} s"
    if seen.looks_complete:
        return Result("hang", FAIL, value, "an upstream that said nothing looked complete", figures)
    return Result("hang", PASS, value, seen.describe(), figures)


@scenario(
    "slow_first_token",
    "slow first token",
    f"A slow model ({SLOW_TTFT_MS / 1000:g} s to the first token) is not a failure: timeouts tuned "
    "too tight cut honest answers.",
)
async def slow_first_token(ctx: Context) -> Result:
    seed = 103
    directives = {**SHORT, "ttft-ms": SLOW_TTFT_MS, "output-tokens": 5}
    reference_text = ctx.reference(seed, directives)
    _, seen = await ctx.send("slow_first_token", {**directives, "seed": seed})
    reference = (await reference_text).content
    figures = first_token(seen)
    ok = seen.done and seen.content == reference and seen.error_event is None
    if not ok or figures["ttft_s"] is None:
        return Result("slow_first_token", FAIL, seen.describe(), "the answer did not arrive whole")
    value = f"first token after {figures['ttft_s']:.2f} s, complete"
    if figures["lag_ms"] is not None:
        value += f"; {figures['lag_ms']:.1f} ms after the mock sent it"
    return Result("slow_first_token", PASS, value, "", figures)


def first_token(seen: Seen) -> dict[str, float | None]:
    """When the first text arrived (s from the request), and how long after the mock's stamp
    (``x_mock_emitted_ns``: one clock, one host) it reached the client (ms)."""
    for at_s, at_ns, event in zip(seen.event_s, seen.event_ns, seen.events, strict=True):
        try:
            chunk = orjson.loads(event.data)
            text = chunk["choices"][0]["delta"].get("content")
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
            continue
        if text:
            stamp = chunk.get("x_mock_emitted_ns")
            lag = (at_ns - stamp) / 1e6 if isinstance(stamp, int) else None
            return {"ttft_s": round(at_s, 4), "lag_ms": None if lag is None else round(lag, 3)}
    return {"ttft_s": None, "lag_ms": None}


@scenario(
    "cut",
    "stream cut after 5 chunks",
    "The upstream connection dies mid-answer. The client must see an error or a cut, never a "
    "normal end: a truncated answer passed off as complete is the worst lie a relay can tell.",
)
async def cut(ctx: Context) -> Result:
    return await _judge_broken_stream(ctx, "cut", {**SHORT, "fault": "disconnect-after:5"}, 104)


@scenario(
    "stall",
    "stall after 3 chunks",
    "The upstream stops sending but keeps the connection open: the relay's idle timeout decides "
    "how long the user stares at a half answer (the value is that wait).",
)
async def stall(ctx: Context) -> Result:
    return await _judge_broken_stream(ctx, "stall", {**SHORT, "fault": "stall-after:3"}, 105)


@scenario(
    "malformed",
    "malformed chunk after 3",
    "One data line is not JSON. Ending with an error, or passing the line on for the client to "
    "see, are both honest; a complete-looking answer with different content is not.",
)
async def malformed(ctx: Context) -> Result:
    directives = {**SHORT, "fault": "malformed-after:3"}
    return await _judge_broken_stream(ctx, "malformed", directives, 106, lossless=True)


@scenario(
    "no_done",
    "clean end without [DONE]",
    "The upstream closed cleanly but never sent [DONE]: nobody can tell whether the answer is "
    "whole, so the client must be told (an error event), not handed a clean end.",
)
async def no_done(ctx: Context) -> Result:
    return await _judge_broken_stream(ctx, "no_done", {**SHORT, "fault": "no-done"}, 107)


@scenario(
    "duplicate_after_retry",
    "no duplicated content after a retry",
    "A relay that retries after bytes reached the client sends the start of the answer twice. "
    "The mock's log shows every attempt; the client's text must be a prefix of one generation.",
)
async def duplicate_after_retry(ctx: Context) -> Result:
    directives = {**SHORT, "fault": "disconnect-after:4"}
    result = await _judge_broken_stream(ctx, "duplicate_after_retry", directives, 108)
    if result.verdict == PASS:
        result.value += f"; {result.figures['attempts']} upstream attempt(s), no content twice"
    return result


async def _judge_cancel(ctx: Context, name: str, stream: bool) -> Result:
    request_id = ctx.new_id(name)
    body = chat_body({**LONG, "id": request_id}, stream=stream)

    three_chunks = asyncio.Event()

    def count(seen: Seen) -> None:
        if content_chunks(seen) >= 3:
            three_chunks.set()

    async def leave_streaming(seen: Seen) -> None:
        await three_chunks.wait()

    async def leave_waiting(seen: Seen) -> None:
        await ctx.log.arrived(request_id, ctx.max_hang_s)
        await asyncio.sleep(0.2)

    seen = await ctx.target.chat(
        body,
        deadline_s=ctx.max_hang_s,
        leave=leave_streaming if stream else leave_waiting,
        on_event=count,
    )
    if seen.end != "left" or seen.left_ns is None:
        why = (
            f"no 3 chunks within {ctx.max_hang_s:g} s to leave after"
            if seen.end == "timeout"
            else "the request ended before the client left"
        )
        return Result(name, FAIL, seen.describe(), why)
    found = await ctx.log.settled(request_id, CANCEL_WATCH_S)
    if not found:
        return Result(name, FAIL, "the request never reached the mock", "")
    entry = found[-1]
    end = entry.get("end")
    if end == "in_progress" or entry.get("ended_ns") is None:
        figures = {"cancel_ms": None, "cancel_ms_at_least": CANCEL_WATCH_S * 1000}
        value = f"still generating {CANCEL_WATCH_S:g} s after the client left"
        return Result(name, FAIL, value, "the upstream keeps generating (and billing)", figures)
    ms = (entry["ended_ns"] - seen.left_ns) / 1e6
    figures = {"cancel_ms": round(ms, 3), "mock_end": end}
    value = f"upstream request ended {ms:.1f} ms after the client left ({end})"
    if end != "cancelled":
        return Result(name, FAIL, value, "the upstream request was not cancelled", figures)
    if ms > CANCEL_LIMIT_MS:
        return Result(name, FAIL, value, f"slower than {CANCEL_LIMIT_MS:g} ms", figures)
    return Result(name, PASS, value, "", figures)


@scenario(
    "cancel_streaming",
    "client leaves mid-stream",
    "A user closed the tab: the relay must close its upstream request at once, or the provider "
    "keeps generating (and billing) for nobody. Value: the mock's end minus the client's close.",
)
async def cancel_streaming(ctx: Context) -> Result:
    return await _judge_cancel(ctx, "cancel_streaming", stream=True)


@scenario(
    "cancel_waiting",
    "client leaves a non-stream wait",
    "The same for a client waiting on a non-streamed answer: nothing was sent yet, so only a relay "
    "watching its client's socket notices.",
)
async def cancel_waiting(ctx: Context) -> Result:
    return await _judge_cancel(ctx, "cancel_waiting", stream=False)


def wire_body(script: str) -> dict[str, Any]:
    body = chat_body({})
    body["messages"][0]["content"] = f"relaybench wire [[wire {script}]]"
    return body


async def _judge_wire(ctx: Context, name: str, script: str) -> Result:
    assert ctx.wire is not None
    sent = b"".join(wire.script(script))
    expected = [e.data for e in SSEDecoder().feed(sent)]
    seen = await ctx.wire.chat(wire_body(script), deadline_s=ctx.max_hang_s)
    got = [e.data for e in seen.events]
    exact = bytes(seen.body) == sent
    figures = {"byte_exact": exact, "bytes": len(sent), "reads": seen.reads}
    if seen.status != 200 or got != expected:
        differ = next(
            (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b), None
        )
        where = f"event {differ} differs" if differ is not None else f"{len(got)} events"
        return Result(name, FAIL, seen.describe(), f"{where} of {len(expected)} sent", figures)
    writes = len(wire.script(script))
    value = f"{len(expected)} events sent in {writes} writes, intact ({seen.reads} client reads)"
    value += "; bytes identical" if exact else "; same events, bytes re-framed"
    if script == "comments":
        value += f"; {seen.comments} comments passed on"
    return Result(name, PASS, value, "", figures)


@scenario(
    "big_event",
    "1 MiB single event",
    "One huge chunk (a long tool call, an image as base64): line buffers that cap or split it "
    "corrupt it.",
    needs="harness",
)
async def big_event(ctx: Context) -> Result:
    return await _judge_wire(ctx, "big_event", "big")


@scenario(
    "crlf",
    "CRLF line endings",
    "SSE allows CRLF, CR or LF; some upstreams (and proxies on Windows) send CRLF.",
    needs="harness",
)
async def crlf(ctx: Context) -> Result:
    return await _judge_wire(ctx, "crlf", "crlf")


@scenario(
    "comments",
    "SSE comments",
    "Keep-alive comments (`: ...`) must not break the stream; a relay may drop or forward them.",
    needs="harness",
)
async def comments(ctx: Context) -> Result:
    return await _judge_wire(ctx, "comments", "comments")


@scenario(
    "utf8_split",
    "UTF-8 split across reads",
    "Network reads cut multi-byte characters in half; decoding each read on its own turns them "
    "into replacement characters.",
    needs="harness",
)
async def utf8_split(ctx: Context) -> Result:
    return await _judge_wire(ctx, "utf8_split", "split")
