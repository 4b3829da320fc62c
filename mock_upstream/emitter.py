"""The emission loop: one timer for every open stream, each chunk written from the timer.

A stream does not sleep in its own task per chunk. Its ``Emission`` puts its next deadline on
the process's ``Emitter`` heap; the emitter keeps one ``call_at`` timer for the earliest
deadline and, when it fires, serves every chunk due by then (deadline <= now + ``EARLY_S``: the
half tick a timer of 1 ms resolution rounds by; each stream once per tick: what falls due
meanwhile waits for the next tick, one loop iteration later, so a mock that is behind still
answers its other requests):
stamp, write straight to the socket (``wire.Wire``), count, schedule that stream's next event.
The stream's task wakes only when it must await something: a write while uvicorn has paused
writing (then ``send`` drains first, as before), a cut, a stall, or the end (its last message
goes through ``send``).

Timing is unchanged: every chunk has an absolute deadline on the monotonic clock (``start +
TTFT`` for the first, then ``previous deadline + gap``, the gap scaled by the load model's
slowdown when it is computed, right after the previous chunk); the stamp is ``time.time_ns()``
right before the write and lateness is ``monotonic() - deadline``. A fault at position N acts
right after chunk N-1 is written (at once for N = 0), keep-alive comments go on their own grid
before a chunk whose deadline is later.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any

from mock_upstream.content import ChunkTemplates
from mock_upstream.errors import ConnectionCut
from mock_upstream.faults import Fault
from mock_upstream.history import Entry
from mock_upstream.load import Admission, slowdown_factor
from mock_upstream.stats import Stats
from relaybench.wire import Wire

EARLY_S = 0.0005

# what a stream's task is woken for: (SEND, data, then) | (CUT,) | (STALL,) | (END,)
SEND, CUT, STALL, END = "send", "cut", "stall", "end"
_CHUNK, _KEEPALIVE = 0, 1
_PREFIXES = 64  # chunk prefixes kept per stream: one per token of the vocabulary fits


class Emitter:
    """Every open stream's next deadline on one heap, served by one loop timer."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.heap: list[tuple[float, int, Emission]] = []
        self.order = itertools.count()  # ties in deadline keep arrival order
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = float("inf")
        self.ticking = False

    def push(self, when: float, emission: Emission) -> None:
        heapq.heappush(self.heap, (when, next(self.order), emission))
        if not self.ticking and when < self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer = self.loop.call_at(when, self._tick)
            self.timer_at = when

    def _tick(self) -> None:
        heap = self.heap
        pop = heapq.heappop
        self.timer = None
        self.ticking = True
        try:
            # what is due as of now, each stream once: what falls due while writing, a stream's
            # next chunk included, waits for the next tick, so the loop gets to its sockets
            # between ticks even when the mock is behind
            horizon = time.monotonic() + EARLY_S
            due = []
            while heap and heap[0][0] <= horizon:
                due.append(pop(heap)[2])
            for emission in due:
                try:
                    emission.fire()
                except Exception as exc:  # one broken stream must not stop the others
                    emission.fail(exc)
        finally:
            self.ticking = False
            self.timer_at = float("inf")
            if heap:
                self.timer_at = heap[0][0]
                self.timer = self.loop.call_at(self.timer_at, self._tick)


class Emission:
    """One stream's chunks on its schedule. ``run`` is the task's side; ``fire`` the timer's."""

    __slots__ = (
        "admission",
        "bodies",
        "chat",
        "deadline",
        "emitter",
        "entry",
        "event",
        "fault",
        "fault_at",
        "gaps",
        "j",
        "keepalive",
        "lateness",
        "next_keepalive",
        "prefixes",
        "slowdown",
        "stats",
        "templates",
        "wake",
        "wire",
    )

    def __init__(
        self,
        emitter: Emitter,
        wire: Wire | None,
        *,
        templates: ChunkTemplates,
        chat: bool,
        bodies: list[bytes],
        gaps: list[float],
        fault: Fault | None,
        fault_at: int,
        start: float,
        ttft_s: float,
        keepalive_s: float,
        next_keepalive: float,
        slowdown: tuple[float, int],
        admission: Admission,
        stats: Stats,
        entry: Entry,
    ) -> None:
        self.emitter = emitter
        self.wire = wire
        self.templates = templates
        self.chat = chat
        self.bodies = bodies
        self.gaps = gaps
        self.fault = fault
        self.fault_at = fault_at
        self.deadline = start + ttft_s
        self.keepalive = keepalive_s
        self.next_keepalive = next_keepalive
        self.slowdown = slowdown
        self.admission = admission
        self.stats = stats
        self.lateness = stats.lateness
        self.entry = entry
        self.prefixes: dict[bytes, bytes] = {}  # chunk content -> its bytes up to the stamp
        self.j = 0  # the next chunk
        self.event = _CHUNK
        self.wake: asyncio.Future[tuple[Any, ...]] | None = None

    async def run(self, send: Any) -> None:
        """Until the last chunk is out; raises ConnectionCut for a cut; a stall never returns."""
        loop = self.emitter.loop
        step: Callable[[], None] = self._at_index
        while True:
            self.wake = loop.create_future()
            step()
            action = await self.wake
            kind = action[0]
            if kind is SEND:
                await send({"type": "http.response.body", "body": action[1], "more_body": True})
                step = action[2]
            elif kind is END:
                return
            elif kind is CUT:
                raise ConnectionCut
            else:  # STALL: until the client or the server quits
                await loop.create_future()

    # -- the timer's side: everything below runs synchronously, from run() or from a tick

    def fail(self, exc: Exception) -> None:
        """Raise ``exc`` in the stream's task (its request then ends as uvicorn ends errors)."""
        wake = self.wake
        if wake is not None and not wake.done():
            wake.set_exception(exc)

    def _task(self, *action: Any) -> None:
        wake = self.wake
        if wake is not None and not wake.done():
            wake.set_result(action)

    def _write(self, data: bytes, then: Callable[[], None]) -> bool:
        """Write now (True), or hand the write to the task, which continues with ``then``."""
        wire = self.wire
        if wire is not None and wire.write(data):
            self.stats.direct_writes += 1
            return True
        self._task(SEND, data, then)
        return False

    def _at_index(self) -> None:
        """Right after chunk j-1 went out (j = 0: at the start): a fault due here, then the next
        event."""
        j = self.j
        if j == self.fault_at:
            fault = self.fault
            assert fault is not None
            self.stats.faults[fault.label] += 1
            if fault.kind == "disconnect":
                self._task(CUT)
                return
            if fault.kind == "stall":
                self._task(STALL)
                return
            self.fault_at = -1  # malformed: one bad line, then the stream goes on
            line = self.templates.malformed()
            self.entry.wrote(len(line), time.time_ns())
            if not self._write(line, self._at_index):
                return
        if j == len(self.bodies):
            self._task(END)
            return
        if j:
            gap = self.gaps[j - 1]
            per_stream, after = self.slowdown
            if per_stream:
                gap *= slowdown_factor(self.admission.active, per_stream, after)
            self.deadline += gap
        self._schedule()

    def _schedule(self) -> None:
        if self.keepalive and self.next_keepalive < self.deadline:
            self.event = _KEEPALIVE
            self.emitter.push(self.next_keepalive, self)
        else:
            self.event = _CHUNK
            self.emitter.push(self.deadline, self)

    def fire(self) -> None:
        """The timer's call: this stream's next event is due."""
        wake = self.wake
        if wake is None or wake.done():  # the task was cancelled (client gone, shutdown)
            return
        if self.event == _KEEPALIVE:
            data = self.templates.keepalive
            self.entry.wrote(len(data), time.time_ns())
            self.next_keepalive += self.keepalive
            if self._write(data, self._schedule):
                self._schedule()
            return
        j = self.j
        body = self.bodies[j]
        prefix = self.prefixes.get(body)
        if prefix is None:
            prefix = self.templates.content_prefix(body)
            if len(self.prefixes) < _PREFIXES:
                self.prefixes[body] = prefix
        now = time.monotonic()
        ns = time.time_ns()
        data = b"%b%d%b" % (prefix, ns, self.templates.content_tail)
        if not j and self.chat:
            data = self.templates.role(ns) + data
        self.lateness.add(now - self.deadline)
        entry = self.entry
        entry.wrote(len(data), ns)
        entry.chunks_sent += 1
        self.stats.chunks += 1
        self.j = j + 1
        if self._write(data, self._at_index):
            self._at_index()
