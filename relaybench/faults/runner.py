"""Runs the suite: the clean stream first (it proves the set-up), then the rest, a few at a time.

The clean stream runs alone: a 401 there means the target needs a key (``AuthRequired``), and
a stream that never shows up in the mock's log means the target's upstream is not this mock
(``NotThroughMock``); both stop the run before anything else is sent. Then the other scenarios
run ``PARALLEL`` at a time, longest first, so the suite takes about as long as its slowest
scenario. Results are appended to ``results`` as each finishes, so an interrupted run still has
everything that finished. ``--under-load N`` keeps N clean streams going against the same
target meanwhile (``Background``), bounded in count and stopped when the suite ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from relaybench.errors import RelaybenchError
from relaybench.faults.client import Client, chat_body
from relaybench.faults.scenarios import (
    FAIL,
    INFO,
    PASS,
    SCENARIOS,
    AuthRequired,
    Context,
    NotThroughMock,
    Result,
)

PARALLEL = 4  # scenarios in flight at once: below the concurrent-request caps of common plans
# The order the rest of the suite starts in: the slow ones first.
ORDER = (
    "hang",
    "slow_first_token",
    "stall",
    "status_429_retry_after",
    "cancel_streaming",
    "cancel_waiting",
    "status_503",
    "status_429_no_retry_after",
    "upstream_down",
    "utf8_split",
)
BACKGROUND = {"ttft-ms": 50, "itl-ms": 10, "output-tokens": 50}  # ~0.6 s streams
BACKGROUND_DEADLINE_S = 30.0
BACKGROUND_MAX_PER_STREAM = 500  # a bound on the load, whatever happens to the suite


def suite_order(only: Sequence[str] = ()) -> list[str]:
    """The scenarios to run, in starting order; ``only`` picks some (the clean stream always
    runs: it proves the set-up)."""
    rest = [name for name in SCENARIOS if name != "clean_stream" and name not in ORDER]
    names = ["clean_stream", *ORDER, *rest]
    return [n for n in names if not only or n in only or n == "clean_stream"]


async def run_suite(
    ctx: Context,
    results: list[Result],
    harness: bool,
    names: list[str],
    announce: Callable[[str], None],
) -> None:
    """Run the ``names`` scenarios into ``results`` (in suite order once done)."""
    clean = await _run_one(ctx, "clean_stream", harness)
    results.append(clean)
    announce(f"clean stream {clean.verdict}; {len(names) - 1} more, {PARALLEL} at a time")
    gate = asyncio.Semaphore(PARALLEL)

    async def limited(name: str) -> None:
        async with gate:
            results.append(await _run_one(ctx, name, harness))

    tasks = [asyncio.ensure_future(limited(name)) for name in names[1:]]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        order = list(SCENARIOS)  # reported in the suite's own order, not the start order
        results.sort(key=lambda r: order.index(r.name) if r.name in order else len(order))


async def _run_one(ctx: Context, name: str, harness: bool) -> Result:
    scenario = SCENARIOS[name]
    if scenario.needs == "harness" and not harness:
        return Result(
            name,
            INFO,
            "skipped",
            "needs an upstream of the harness's own: runs when the harness starts the relay",
            {"skipped": True},
        )
    started = time.perf_counter()
    try:
        result = await scenario.run(ctx)
    except (RelaybenchError, AuthRequired, NotThroughMock):
        raise
    except Exception as exc:  # the scenario could not score the target: say so, keep going
        result = Result(name, FAIL, f"could not be scored: {type(exc).__name__}: {exc}")
    result.duration_s = time.perf_counter() - started
    return result


@dataclass
class Background:
    """N clean streams, one after another per slot, until ``stop``; what each one got.

    ``stop`` lets the streams in flight finish (each is short and has a deadline), so every
    stream started is judged and none is cut by the harness itself.
    """

    client: Client
    streams: int
    run_id: str
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stopping: bool = False

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._slot(i)) for i in range(self.streams)]

    async def _slot(self, slot: int) -> None:
        for k in range(BACKGROUND_MAX_PER_STREAM):
            if self._stopping:
                return
            tag = {**BACKGROUND, "seed": 7000 + k, "id": f"{self.run_id}-load-{slot}-{k}"}
            seen = await self.client.chat(chat_body(tag), deadline_s=BACKGROUND_DEADLINE_S)
            if seen.done and seen.error_event is None:
                self.ok += 1
            else:
                self.failed.append(seen.describe())

    async def stop(self, *, graceful: bool = True) -> None:
        """End the load: let the streams in flight finish (``graceful``), or cut them now."""
        self._stopping = True
        try:
            if graceful:
                await asyncio.gather(*self._tasks)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def result(self) -> Result:
        total = self.ok + len(self.failed)
        value = f"{self.streams} streams held; {self.ok} of {total} completed cleanly"
        figures: dict[str, Any] = {
            "streams": self.streams,
            "ok": self.ok,
            "failed": total - self.ok,
        }
        if self.failed:
            detail = "; ".join(sorted(set(self.failed))[:3])
            return Result("background_load", FAIL, value, detail, figures)
        return Result("background_load", PASS, value, "", figures)


async def run(
    ctx: Context,
    results: list[Result],
    *,
    harness: bool,
    load: Background | None,
    names: list[str],
    announce: Callable[[str], None],
) -> None:
    """The whole run: the wire upstream served, the optional load, the suite."""
    if ctx.wire_server is not None:
        await ctx.wire_server.start()
    try:
        if load is not None:
            load.start()
        await run_suite(ctx, results, harness, names, announce)
    except BaseException:  # Ctrl-C or a failed set-up: do not wait for the load to finish
        if load is not None:
            await load.stop(graceful=False)
        raise
    else:
        if load is not None:
            await load.stop()
    finally:
        if ctx.wire_server is not None:
            await ctx.wire_server.stop()
