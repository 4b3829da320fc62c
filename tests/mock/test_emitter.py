"""The emission timer (sans sockets): one wake-up serves every due chunk, in deadline order."""

from __future__ import annotations

import asyncio
import time

from mock_upstream.emitter import EARLY_S, Emitter


class _Counting(Emitter):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.ticks = 0
        self.began: list[float] = []  # the clock as each tick began (its horizon is later)

    def _tick(self) -> None:
        self.ticks += 1
        self.began.append(time.monotonic())
        super()._tick()


class _Fake:
    """Stands in for an Emission: records when it fired; may raise, may ask to fire again."""

    def __init__(self, name: str, log: list, *, boom: bool = False, again: float = 0) -> None:
        self.name, self.log, self.boom, self.again = name, log, boom, again
        self.failed: Exception | None = None
        self.emitter: Emitter | None = None
        self.due = 0.0

    def fire(self) -> None:
        tick = self.emitter.ticks if isinstance(self.emitter, _Counting) else 0
        self.log.append((self.name, time.monotonic() - self.due, tick, self.due))
        if self.boom:
            raise RuntimeError("boom")
        if self.again and self.emitter is not None:
            self.again, self.due = 0, self.due + 0.02
            self.emitter.push(self.due, self)

    def fail(self, exc: Exception) -> None:
        self.failed = exc


def _run(body) -> None:
    async def main() -> None:
        await body(asyncio.get_running_loop())

    asyncio.run(main())


def test_one_wake_up_serves_every_chunk_due_at_it() -> None:
    log: list = []

    async def body(loop) -> None:
        emitter = _Counting(loop)
        due = time.monotonic() + 0.03
        for i in range(100):
            fake = _Fake(f"s{i}", log)
            fake.due = due
            emitter.push(due, fake)
        await asyncio.sleep(0.1)
        assert emitter.ticks == 1
        assert [name for name, *_ in log] == [f"s{i}" for i in range(100)]  # ties: push order
        assert all(late >= -EARLY_S for _, late, *_ in log)  # never before the half tick

    _run(body)


def test_deadlines_are_served_in_order_and_rescheduled_from_the_tick() -> None:
    """Judged per tick, not by the test's clock: a late first tick may serve all three at once.

    On time the order is early, middle, early, late; a first tick 50 ms late serves early,
    middle and late together and early's next chunk (pushed during that tick) in the next one.
    What must hold either way: ticks serve in deadline order (ties in push order), a chunk
    pushed during a tick waits for a later one, and a tick serves everything waiting that is
    due by the time it begins.
    """
    log: list = []

    async def body(loop) -> None:
        emitter = _Counting(loop)
        now = time.monotonic()
        for name, offset in (("late", 0.06), ("early", 0.01), ("middle", 0.03)):
            fake = _Fake(name, log, again=1 if name == "early" else 0)
            fake.emitter, fake.due = emitter, now + offset
            emitter.push(fake.due, fake)
        limit = time.monotonic() + 10
        while len(log) < 4 and time.monotonic() < limit:  # wait for the four, bounded
            await asyncio.sleep(0.01)
        names = [name for name, *_ in log]
        assert sorted(names) == ["early", "early", "late", "middle"], log
        again = names.index("early", names.index("early") + 1)  # early's rescheduled chunk
        pushes = ["late", "early", "middle"]  # push order breaks ties (early again: last)
        seq = [3 if i == again else pushes.index(name) for i, name in enumerate(names)]
        keys = [(tick, due, seq[i]) for i, (_, _, tick, due) in enumerate(log)]
        assert keys == sorted(keys), log  # each tick in deadline order, the ticks in turn
        pushed_in = [log[names.index("early")][2] if i == again else 0 for i in range(4)]
        for i, (_, _, tick, due) in enumerate(log):
            assert tick > pushed_in[i], log  # pushed during a tick (or before any): served later
            waited = range(pushed_in[i] + 1, tick)  # ticks that began while it waited
            assert all(due > emitter.began[k - 1] for k in waited), (log, emitter.began)
        assert all(late >= -EARLY_S for _, late, *_ in log)

    _run(body)


def test_a_failing_stream_does_not_stop_the_others() -> None:
    log: list = []

    async def body(loop) -> None:
        emitter = Emitter(loop)
        due = time.monotonic() + 0.01
        broken, fine = _Fake("broken", log, boom=True), _Fake("fine", log)
        for fake in (broken, fine):
            fake.due = due
            emitter.push(due, fake)
        await asyncio.sleep(0.05)
        assert [name for name, *_ in log] == ["broken", "fine"]
        assert isinstance(broken.failed, RuntimeError) and fine.failed is None

    _run(body)


def test_a_mock_that_is_behind_still_gets_to_its_other_work() -> None:
    """A stream that is always overdue gets one chunk per tick; the loop runs in between."""
    log: list = []

    class _Behind(_Fake):
        def fire(self) -> None:
            super().fire()
            assert self.emitter is not None
            self.due = time.monotonic() - 1.0  # overdue again at once
            self.emitter.push(self.due, self)

    async def body(loop) -> None:
        emitter = _Counting(loop)
        behind = _Behind("behind", log)
        behind.emitter, behind.due = emitter, time.monotonic()
        emitter.push(behind.due, behind)
        for _ in range(3):  # each sleep returns only if the ticks leave the loop room to run;
            await asyncio.sleep(0.01)  # every one spans a tick, even if the process was paused
        assert emitter.ticks == len(log) > 1  # one chunk per tick, many ticks
        emitter.heap.clear()

    _run(body)
