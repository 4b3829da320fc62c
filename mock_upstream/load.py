"""The load model: bounded concurrency with a FIFO queue, and ITL slowdown as streams grow.

``admit()`` decides synchronously (so a full queue is answered 429 before any await): it
returns ``None`` when a slot is free, or a future that completes when a slot is handed over.
``release()`` hands its slot straight to the oldest waiter, so the queue is strictly FIFO and a
late arrival can never overtake.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class QueueFull(Exception):
    """More than ``max_queue`` requests are already waiting."""


class Admission:
    def __init__(self, max_concurrency: int, max_queue: int | None) -> None:
        self.max_concurrency = max_concurrency  # 0: unlimited
        self.max_queue = max_queue  # None: unbounded
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def admit(self) -> asyncio.Future[None] | None:
        if self.max_concurrency <= 0 or (self.active < self.max_concurrency and not self._waiters):
            self.active += 1
            return None
        if self.max_queue is not None and len(self._waiters) >= self.max_queue:
            raise QueueFull
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        return fut

    def abandon(self, fut: asyncio.Future[None]) -> None:
        """A queued request went away: give back a slot it was handed, else leave the queue."""
        if fut.done() and not fut.cancelled():
            self.release()
        else:
            fut.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(fut)

    def release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot passes on; ``active`` is unchanged
                return
        self.active -= 1


def slowdown_factor(active: int, per_stream: float, after: int) -> float:
    """ITL multiplier of a batching server: ``1 + per_stream * max(0, active - after)``."""
    return 1.0 + per_stream * max(0, active - after) if per_stream else 1.0
