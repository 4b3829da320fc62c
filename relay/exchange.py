"""One relayed request's lifeline: who may interrupt it, and why.

Four things can end a relayed request early: the client hangs up, the upstream is silent past
the first-token timeout, or past the idle timeout between chunks, or the relay is shutting down
and the grace period ran out. Each calls ``Exchange.interrupt(reason)``, which records the
reason and cancels the request's task; the handler catches that cancellation, reads the reason,
and turns it into an outcome (closing the upstream response at once in every case).

Timeouts use one lazily re-armed timer: per chunk the hot path only stores ``last`` (a float);
when the timer fires it re-arms itself at ``last + idle`` if data arrived meanwhile.
"""

from __future__ import annotations

import asyncio

from starlette.types import Receive

DISCONNECT = "disconnect"
FIRST_TOKEN_TIMEOUT = "first_token_timeout"
IDLE_TIMEOUT = "idle_timeout"
SHUTDOWN = "shutdown"


class Exchange:
    __slots__ = (
        "_timer",
        "done",
        "first_token_s",
        "idle_s",
        "last",
        "loop",
        "mode",
        "reason",
        "task",
    )

    def __init__(self, first_token_s: float, idle_s: float) -> None:
        self.loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        self.first_token_s = first_token_s
        self.idle_s = idle_s
        self.reason: str | None = None
        self.done = False  # set before the final send: a late disconnect is then no interruption
        self.mode: str | None = None
        self.last = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def interrupt(self, reason: str) -> None:
        if self.reason is None and not self.done:
            self.reason = reason
            self.task.cancel()

    def caused(self) -> bool:
        """True when the cancellation came from ``interrupt`` (then it is taken back)."""
        if self.reason is None:
            return False
        self.task.uncancel()
        return True

    def wait_first_byte(self) -> None:
        """Start (or restart, per attempt) the first-token clock."""
        self.mode = "first"
        self._arm(self.loop.time() + self.first_token_s)

    def receiving(self) -> None:
        """The first byte arrived: from now on the idle gap is what is watched."""
        self.mode = "idle"
        self.last = self.loop.time()
        self._arm(self.last + self.idle_s)

    def pause(self) -> None:
        self.mode = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def finish(self) -> None:
        self.done = True
        self.pause()

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self.mode == "first":
            self.interrupt(FIRST_TOKEN_TIMEOUT)
        elif self.mode == "idle":
            due = self.last + self.idle_s
            if self.loop.time() >= due:
                self.interrupt(IDLE_TIMEOUT)
            else:
                self._timer = self.loop.call_at(due, self._fire)


async def watch_disconnect(receive: Receive, exchange: Exchange) -> None:
    """Runs beside the request (after its body was read): a disconnect interrupts it at once."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            exchange.interrupt(DISCONNECT)
            return
