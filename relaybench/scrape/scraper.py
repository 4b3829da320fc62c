"""Polls every source once per interval, each on its own thread, into ``server/<source>.jsonl``.

Each source (``<server>.<kind>``: ``relay.metrics``, ``mock.stats``, ``relay.process``,
``redis.redis``, ...) has a daemon thread that wakes on a fixed grid (``start + k * interval``;
a tick missed because a poll was slow is skipped, never bunched), polls, and appends one JSON
line at once:

    {"time_ns": wall ns, "mono_ns": monotonic ns, "poll_ms": how long the poll took,
     "interval_s": since the previous good poll, "gauges": {...}, "rates": {...},
     "quantiles": {...}}

or, when the poll failed, ``{"time_ns", "mono_ns", "gap": "why"}``. A failure is never fatal: the
first one of each source is reported once through ``warn``, every one is a gap. A process that
exited is noted once and not polled again. No poll can outlive its ``timeout_s``, and ``stop()``
returns at once: a thread still waiting on a slow endpoint ends by itself after its timeout,
writing nothing more. ``server/sources.json`` lists the sources with their counts and first
error (written at start and at stop), so a report can say what was not scraped and why, and
each source thread's CPU seconds over ``wall_s``: what the scraping cost the harness.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from relaybench import credentials
from relaybench.scrape import fetch, mockstats, prom
from relaybench.scrape.process import ProcessGone, ProcessProbe
from relaybench.scrape.redisprobe import RedisFailed, RedisProbe

STOP_WAIT_S = 0.2  # the most stop() waits for threads that are between polls
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class PollFailed(Exception):
    """One poll failed; ``final`` when the source is gone for good (an exited process)."""

    def __init__(self, reason: str, *, final: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.final = final


def safe_name(text: str) -> str:
    return _UNSAFE.sub("-", text).strip("-.") or "server"


def name_for_url(url: str) -> str:
    parts = urlsplit(url)
    return safe_name(f"{parts.hostname or 'scrape'}-{parts.port or ''}")


class _Prometheus:
    kind = "metrics"

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url, self.timeout_s = url, timeout_s
        self.address = credentials.redact_url(url)
        self._last: tuple[float, prom.Snapshot] | None = None

    def poll(self) -> dict[str, dict]:
        try:
            body, ctype = fetch.get(self.url, self.timeout_s)
            snap = prom.parse(body.decode("utf-8", errors="replace"))
        except fetch.FetchError as exc:
            raise PollFailed(str(exc)) from None
        except prom.NotPrometheus as exc:
            raise PollFailed(f"{exc}; Content-Type {prom.clip(ctype, 80) or 'none'}") from None
        now = time.monotonic()
        before = self._last
        self._last = (now, snap)
        if before is None:
            return prom.interval(None, snap, 0.0)
        return {**prom.interval(before[1], snap, now - before[0]), "interval_s": now - before[0]}


class _MockStats:
    kind = "stats"

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url, self.timeout_s = url, timeout_s
        self.address = credentials.redact_url(url)
        self._last: tuple[float, dict[str, Any]] | None = None

    def poll(self) -> dict[str, dict]:
        try:
            body, _ = fetch.get(self.url, self.timeout_s)
            data = mockstats.parse(body)
        except (fetch.FetchError, mockstats.NotMockStats) as exc:
            raise PollFailed(str(exc)) from None
        now = time.monotonic()
        before = self._last
        self._last = (now, data)
        if before is None:
            return mockstats.interval(None, data, 0.0)
        seconds = now - before[0]
        return {**mockstats.interval(before[1], data, seconds), "interval_s": seconds}


class _Process:
    kind = "process"

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.address = f"pid {pid}"
        self._probe: ProcessProbe | None = None
        try:
            self._probe = ProcessProbe(pid)
        except ProcessGone as exc:
            self._missing = str(exc)

    def poll(self) -> dict[str, dict]:
        if self._probe is None:
            raise PollFailed(self._missing, final=True)
        try:
            return self._probe.sample()
        except ProcessGone as exc:
            raise PollFailed(str(exc), final=True) from None


class _Redis:
    kind = "redis"

    def __init__(self, url: str, timeout_s: float) -> None:
        self.address = credentials.redact_url(url)
        self._probe: RedisProbe | None = None
        self._url, self._timeout_s = url, timeout_s

    def poll(self) -> dict[str, dict]:
        try:
            if self._probe is None:
                self._probe = RedisProbe(self._url, self._timeout_s)
            return self._probe.sample()
        except RedisFailed as exc:
            raise PollFailed(str(exc)) from None


@dataclass
class _Source:
    server: str
    poller: Any
    samples: int = 0
    gaps: int = 0
    first_error: str | None = None
    ended: str | None = None
    cpu_s: float | None = None  # CPU its thread used, once it finished
    thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"{self.server}.{self.poller.kind}"

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "server": self.server,
            "kind": self.poller.kind,
            "address": self.poller.address,
            "samples": self.samples,
            "gaps": self.gaps,
            "first_error": self.first_error,
            "ended": self.ended,
            "cpu_s": None if self.cpu_s is None else round(self.cpu_s, 4),
        }


def _stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


class Scraper:
    """``add_*`` the sources, then ``start()`` … ``stop()`` (or use it as a context manager)."""

    def __init__(
        self,
        run_dir: Path,
        interval_s: float = 1.0,
        timeout_s: float | None = None,
        warn: Callable[[str], None] = _stderr,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("the scrape interval must be positive")
        self.dir = Path(run_dir) / "server"
        self.interval_s = interval_s
        self.timeout_s = timeout_s if timeout_s is not None else interval_s
        self.warn = warn
        self.sources: list[_Source] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._started: float | None = None
        self._stopped: float | None = None

    # -- sources ------------------------------------------------------------------------------

    def _add(self, server: str, poller: Any) -> None:
        server = safe_name(server)
        taken = {s.name for s in self.sources}
        base, n = server, 2
        while f"{server}.{poller.kind}" in taken:
            server, n = f"{base}-{n}", n + 1
        self.sources.append(_Source(server, poller))

    def add_prometheus(self, server: str, url: str) -> None:
        self._add(server, _Prometheus(url, self.timeout_s))

    def add_mock_stats(self, server: str, url: str) -> None:
        self._add(server, _MockStats(url, self.timeout_s))

    def add_process(self, server: str, pid: int) -> None:
        self._add(server, _Process(pid))

    def add_redis(self, server: str, url: str) -> None:
        self._add(server, _Redis(url, self.timeout_s))

    # -- running ------------------------------------------------------------------------------

    def start(self) -> Scraper:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_status()
        origin = self._started = time.monotonic()
        for source in self.sources:
            source.thread = threading.Thread(
                target=self._run, args=(source, origin), name=f"scrape-{source.name}", daemon=True
            )
            source.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._stopped = time.monotonic()
        deadline = self._stopped + STOP_WAIT_S
        for source in self.sources:
            if source.thread is not None:
                source.thread.join(max(0.0, deadline - time.monotonic()))
        self._write_status()

    def __enter__(self) -> Scraper:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, source: _Source, origin: float) -> None:
        try:
            self._loop(source, origin)
        finally:
            source.cpu_s = time.thread_time()  # what scraping this source cost the harness

    def _loop(self, source: _Source, origin: float) -> None:
        path = self.dir / f"{source.name}.jsonl"
        with path.open("ab") as out:
            tick = origin
            while not self._stop.is_set():
                row, final = self._poll(source)
                if self._stop.is_set() and "gap" in row:
                    break  # a poll cut short by the end of the run is no gap in the data
                out.write(orjson.dumps(row) + b"\n")
                out.flush()
                if final:
                    return
                tick += self.interval_s
                now = time.monotonic()
                if tick < now:  # the poll overran: skip the missed ticks
                    tick += ((now - tick) // self.interval_s + 1) * self.interval_s
                self._stop.wait(tick - now)

    def _poll(self, source: _Source) -> tuple[dict[str, Any], bool]:
        wall, mono = time.time_ns(), time.monotonic_ns()
        try:
            values = source.poller.poll()
        except Exception as caught:  # whatever a server answers, its thread and the run go on
            exc = (
                caught
                if isinstance(caught, PollFailed)
                else PollFailed(f"unexpected {type(caught).__name__}: {prom.clip(str(caught))}")
            )
            with self._lock:
                source.gaps += 1
                first = source.first_error is None
                if first:
                    source.first_error = exc.reason
                if exc.final:
                    source.ended = exc.reason
            if first:
                what = f"{source.name} ({source.poller.address})"
                then = "not sampled again" if exc.final else "recorded as gaps, the run goes on"
                self.warn(f"scrape {what}: {exc.reason}; {then}")
            return {"time_ns": wall, "mono_ns": mono, "gap": exc.reason}, exc.final
        with self._lock:
            source.samples += 1
        poll_ms = (time.monotonic_ns() - mono) / 1e6
        return {"time_ns": wall, "mono_ns": mono, "poll_ms": round(poll_ms, 3), **values}, False

    def _write_status(self) -> None:
        with self._lock:
            wall = None
            if self._started is not None and self._stopped is not None:
                wall = round(self._stopped - self._started, 3)
            status = {
                "interval_s": self.interval_s,
                "timeout_s": self.timeout_s,
                "wall_s": wall,  # with each source's cpu_s: the harness's cost of scraping
                "sources": [s.status() for s in self.sources],
            }
        path = self.dir / "sources.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_bytes(orjson.dumps(status, option=orjson.OPT_INDENT_2))
        tmp.replace(path)
