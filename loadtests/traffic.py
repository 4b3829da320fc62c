"""Trace replay, chat sessions and client retries inside the Locust process.

The decisions are pure functions in ``relaybench.traffic``; this module keeps the per-process
state the user (``loadtests.user``) needs to act on them:

- ``TraceReplay`` — the run's trace schedule (built once, before time zero), this process's
  exact share of it as absolute intended times, and each row's request: a prompt of the row's
  input tokens, ``max_tokens`` = its output tokens. Rows of one session go to one process and
  send the conversation so far (what was actually answered) before their new message.
- ``ChatSessions`` — hands out session ids (process ``i`` of ``N`` runs sessions ``i, i+N, …``)
  and runs one turn of a user's session per Locust task; the think time until the next turn is
  the user's Locust wait, so stopping the run never waits behind a thinking user.
- ``Attempts`` — the bookkeeping of one user request's attempts under the retry policy: each
  attempt's status, error type, start and the wait before it, written into the one record.
- ``Dispatcher`` — open loop (any scenario): which user sends the next arrival, and when.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import orjson

from loadtests import schedule
from relaybench.run.config import LoadConfig
from relaybench.traffic import retry
from relaybench.traffic.sessions import Session, content_chars, sized_messages, tokens_of

if TYPE_CHECKING:
    from loadtests.user import ChatUser

ASKED_BIN_S = 10.0  # the asked rate each record carries: the schedule's arrivals per 10 s


def request_body(
    cfg: LoadConfig, messages: list[dict[str, Any]], max_tokens: int, *, stream: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The chat completion body and the record's prompt-size fields."""
    body: dict[str, Any] = {
        "model": cfg.model,
        "messages": messages,
        "stream": stream,
        "max_tokens": max_tokens,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    chars = content_chars(messages)
    return body, {"prompt_chars": chars, "prompt_tokens": tokens_of(chars)}


@dataclass(frozen=True)
class TraceRow:
    row: int
    input_tokens: int
    output_tokens: int
    session: str
    key: str  # what the prompt text is cut by: unique per arrival, the same on every target


class TraceReplay:
    """This process's part of the trace schedule, and the request each row sends."""

    def __init__(self, cfg: LoadConfig) -> None:
        self.cfg = cfg
        self.schedule = cfg.traffic.schedule(cfg.seed)  # before time zero: parsing takes ms
        bins = self.schedule.per_bin(ASKED_BIN_S)
        self.asked = (bins / ASKED_BIN_S).tolist()
        self._history: dict[str, list[dict[str, Any]]] = {}
        self._turns: dict[str, int] = {}

    def arrivals(self, t0_ns: int, index: int) -> Iterator[tuple[int, float, TraceRow]]:
        """``(intended_ns, asked rate, row)`` of process ``index``'s share, in time order,
        up to the run's end."""
        mine = self.schedule.share(index, self.cfg.generators)
        end = self.cfg.shape.duration_s
        seed = self.cfg.seed
        sessions = mine.session.tolist() if mine.session is not None else None
        last = len(self.asked) - 1
        for i, offset in enumerate(mine.offset_s.tolist()):
            if offset >= end:
                return
            row = int(mine.row[i])
            yield (
                schedule.intended_ns(t0_ns, offset),
                self.asked[min(int(offset // ASKED_BIN_S), last)],
                TraceRow(
                    row=row,
                    input_tokens=int(mine.input_tokens[i]),
                    output_tokens=int(mine.output_tokens[i]),
                    session=sessions[i] if sessions else "",
                    key=f"trace:{seed}:{row}:{offset!r}",
                ),
            )

    def request(self, r: TraceRow, *, stream: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        """The body for ``r`` and the record fields it adds."""
        history = self._history.get(r.session) if r.session else None
        messages = sized_messages(r.input_tokens, r.key, history)
        body, fields = request_body(self.cfg, messages, r.output_tokens, stream=stream)
        fields["trace_row"] = r.row
        if r.session:
            turn = self._turns.get(r.session, 0)
            self._turns[r.session] = turn + 1
            self._history[r.session] = messages  # until the answer arrives
            fields.update(session=r.session, turn=turn)
        return body, fields

    def prepare(self, r: TraceRow, *, stream: bool) -> tuple[dict[str, Any], dict[str, Any], bytes]:
        """``request`` and the serialised body."""
        body, fields = self.request(r, stream=stream)
        return body, fields, orjson.dumps(body)

    def answered(self, r: TraceRow, body: dict[str, Any], answer: str) -> None:
        """A session row's answer joins the conversation its next row sends."""
        if r.session and answer:
            self._history[r.session] = [
                *body["messages"],
                {"role": "assistant", "content": answer},
            ]


@dataclass
class _ChatState:
    session: Session
    turn: int = 0
    next_at: float | None = None  # perf_counter seconds: the next turn's send deadline


class ChatSessions:
    """Session ids for this process, and one turn per Locust task."""

    def __init__(self, cfg: LoadConfig, index: int) -> None:
        self.cfg = cfg
        self.index = index
        self._started = 0

    def _new(self) -> Session:
        sid = self.index + self.cfg.generators * self._started
        self._started += 1
        return Session(self.cfg.traffic.chat, self.cfg.seed, sid)

    def turn(self, user: ChatUser) -> None:
        state: _ChatState | None = getattr(user, "chat_state", None)
        if state is None or state.turn >= len(state.session):
            state = _ChatState(self._new())
            user.chat_state = state
        s, k = state.session, state.turn
        turn = s.turns[k]
        body, fields = request_body(
            self.cfg, s.messages(k), turn.max_tokens, stream=user.ctx.target.stream
        )
        rec, answer = user.send(
            user.ctx.next_seq(), orjson.dumps(body), turn.max_tokens, keep_text=True,
            session=str(s.id), turn=k, **fields,
        )  # fmt: skip
        s.answered(k, answer)
        state.turn += 1
        state.next_at = None
        if state.turn < len(s):
            state.next_at = time.perf_counter() + s.think_s(state.turn, rec["output_tokens"])


def think_left(user: ChatUser) -> float:
    """Seconds until this user's next chat turn is due (0 outside chat sessions)."""
    state: _ChatState | None = getattr(user, "chat_state", None)
    if state is None or state.next_at is None:
        return 0.0
    return max(0.0, state.next_at - time.perf_counter())


class Attempts:
    """The attempts of one user request under ``policy``."""

    def __init__(self, policy: retry.RetryPolicy, seed: int, index: int, seq: int, start_pc: int):
        self.policy = policy
        self._rng = retry.rng_for(seed, index, seq) if policy.enabled else None
        self._start_pc = start_pc
        self._attempt_pc = start_pc
        self._wait_ms = 0.0
        self.status: list[int] = []
        self.errors: list[str] = []
        self.starts: list[float] = []
        self.waits: list[float] = []

    def ended(self, rec: dict[str, Any], retry_after: str | None) -> float | None:
        """The attempt that ``rec`` describes is over: ``rec`` now lists every attempt so far;
        returns the seconds to wait before the next one, or None (the user request ends)."""
        if self._rng is None:
            return None
        self.status.append(rec["status"] or 0)
        self.errors.append(rec["error"] or "")
        self.starts.append(round((self._attempt_pc - self._start_pc) / 1e6, 4))
        self.waits.append(round(self._wait_ms, 4))
        outcome = retry.Outcome(
            rec["error"],
            content=rec["content_chunks"] > 0,
            retry_after_s=retry.parse_retry_after(retry_after, time.time()),
        )
        rec.update(  # every attempt so far: also right if the run stops during the next wait
            attempts=len(self.status),
            attempt_status=list(self.status),
            attempt_error=list(self.errors),
            attempt_start_ms=list(self.starts),
            attempt_wait_ms=list(self.waits),
        )
        return retry.next_wait(self.policy, len(self.status), outcome, self._rng)

    def wait(self, seconds: float) -> None:
        """Sleep until the next attempt's deadline."""
        deadline = time.perf_counter_ns() + math.ceil(seconds * 1e9)
        while (left := deadline - time.perf_counter_ns()) > 0:
            gevent.sleep(left / 1e9)
        self._wait_ms = seconds * 1e3
        self._attempt_pc = time.perf_counter_ns()


Arrival = tuple[int, float | None, TraceRow | None]  # intended_ns, asked rate, trace row


class Dispatcher:
    """Open loop: which user sends the next arrival, and when.

    One user at a time (the leader) takes the next arrival, prepares it and sleeps until it is
    due; then it hands the lead to the user that became free most recently (a stack) and sends.
    Users that are not needed stay idle, so the few in use keep their keep-alive connections
    warm. Had every free user taken a future arrival, each would wait ``users / rate`` seconds
    between its requests, find its connection closed by the server's idle timeout (uvicorn's is
    5 s) and pay a reconnect, with a thread-pool address lookup, inside its measured TTFT.
    """

    def __init__(self, take: Callable[[], Arrival | None]) -> None:
        self._take = take
        self._idle: list[gevent.event.Event] = []
        self._led = False
        self._done = False

    def next(self, prepare: Callable[[Arrival], Any]) -> tuple[Arrival, Any] | None:
        """The next arrival once it is due, and what ``prepare`` made of it before the wait;
        None when the schedule is done."""
        if self._led and not self._done:
            turn = gevent.event.Event()
            self._idle.append(turn)
            try:
                turn.wait()
            except BaseException:  # stopped while idle: pass the lead on if it was ours
                if turn.is_set():
                    self._hand_over()
                else:
                    self._idle.remove(turn)
                raise
        if self._done:
            return None
        self._led = True
        try:
            arrival = self._take()
            if arrival is None:
                self._done = True
                return None
            prepared = prepare(arrival)
            while (left := arrival[0] - time.time_ns()) > 0:
                gevent.sleep(left / 1e9)
            if self._done:  # the run stopped meanwhile: nothing goes out after its end
                return None
        finally:
            self._hand_over()
        return arrival, prepared

    def stop(self) -> None:
        """The run is ending (Locust's ``test_stopping``): no more arrivals; idle users return."""
        self._done = True
        self._hand_over()

    def _hand_over(self) -> None:
        if self._done:  # nothing left to send: every idle user returns None
            for turn in self._idle:
                turn.set()
            self._idle.clear()
        if self._idle:
            self._idle.pop().set()
        else:
            self._led = False
