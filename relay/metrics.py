"""The relay's metrics, kept and rendered by ``prometheus_client`` (the Prometheus text format).

Each ``Relay`` has its own ``CollectorRegistry`` (no process-global state, so tests can run
several relays in one process). Nothing here runs per streamed chunk: counters move once per
request, and the two values that change all the time (active streams, the upstream pool's busy
and idle connections) are read only when ``/metrics`` is scraped. ``ProcessCollector`` adds the
process's CPU seconds, resident memory, open fds and start time.

With ``--workers N`` the workers share their metrics through ``prometheus_client``'s
multiprocess mode: the first process makes a directory and names it in
``PROMETHEUS_MULTIPROC_DIR`` before ``prometheus_client`` is imported anywhere (the library picks
its value class at import), the workers inherit it, every worker writes its counters, histogram
and gauges there, and whichever worker a scrape reaches answers for all of them (counters and
the histogram summed, the live gauges summed over living workers). The two live gauges are then
copied from each worker's state every ``LIVE_REFRESH_S`` and before each answer, as
``set_function`` has no multiprocess form. ``ProcessCollector`` would describe only the worker
that answers, so it is left out there: sample the process tree by PID instead.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from relay.config import METRICS_DIR_ENV

__all__ = ["CONTENT_TYPE", "Metrics"]

LIVE_REFRESH_S = 0.5
POOL_STATES = ("total", "idle", "busy")

# What ``generate_latest`` writes (without an escaping argument): the classic text format,
# which every Prometheus version reads. (The library's CONTENT_TYPE_LATEST names 1.0.0.)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Upper bounds (seconds) of the time-to-first-upstream-byte histogram: 1 ms ... 30 s.
TTFB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _PoolCollector(Collector):
    """The upstream pool's connections by state, read at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "relay_upstream_pool_connections",
            "Upstream pool connections by state.",
            labels=["state"],
        )
        for state, count in sorted(self.metrics.pool_state().items()):
            family.add_metric([state], count)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # several workers: metrics go to the shared directory, not into the answering registry
        self.shared_dir = os.environ.get(METRICS_DIR_ENV)
        registry = None if self.shared_dir else self.registry
        self.active_streams = 0  # requests being relayed now (also in /health)
        self.direct_writes = 0  # chunks ``relay.forward`` wrote, added at each stream's end
        self.pool_state: Callable[[], dict[str, int]] = dict  # the upstream sets it
        self._refresher: asyncio.TimerHandle | None = None
        self.requests = Counter(
            "relay_requests",
            "Finished requests by route and status (499: the client left first).",
            ["route", "status"],
            registry=registry,
        )
        self._live: tuple[Gauge, Gauge] | None = None
        if self.shared_dir:
            self._live = (
                Gauge(
                    "relay_active_streams",
                    "Requests being relayed now.",
                    multiprocess_mode="livesum",
                    registry=None,
                ),
                Gauge(
                    "relay_upstream_pool_connections",
                    "Upstream pool connections by state.",
                    ["state"],
                    multiprocess_mode="livesum",
                    registry=None,
                ),
            )
        else:
            active = Gauge("relay_active_streams", "Requests being relayed now.", registry=registry)
            active.set_function(lambda: self.active_streams)
        self.ttfb = Histogram(
            "relay_upstream_first_byte_seconds",
            "Time from sending a request upstream to its first response body byte.",
            buckets=TTFB_BUCKETS,
            registry=registry,
        )
        self.rate_limited = Counter(
            "relay_rate_limited", "Requests refused with 429 by a plan limit.", registry=registry
        )
        self.ratelimit_backend_errors = Counter(
            "relay_ratelimit_backend_errors",
            "Rate-limit checks that could not reach the backend (fail-open/closed applied).",
            registry=registry,
        )
        self.upstream_errors = Counter(
            "relay_upstream_errors", "Upstream failures by kind.", ["kind"], registry=registry
        )
        self.upstream_retries = Counter(
            "relay_upstream_retries", "Upstream attempts that were retried.", registry=registry
        )
        self.client_disconnects = Counter(
            "relay_client_disconnects", "Clients gone before the end.", registry=registry
        )
        self.tokens = Counter(
            "relay_tokens",
            "Tokens reported by upstream usage, per principal.",
            ["principal", "kind"],
            registry=registry,
        )
        if self.shared_dir:
            multiprocess.MultiProcessCollector(self.registry, path=self.shared_dir)
        else:
            self.registry.register(_PoolCollector(self))
            ProcessCollector(registry=self.registry)

    def forget_worker(self, pid: int) -> None:
        """A worker died: its live gauges leave the sums (its counts stay in the counters)."""
        if self.shared_dir:
            multiprocess.mark_process_dead(pid, self.shared_dir)

    def start(self) -> None:
        """In the running loop: keep the shared live gauges current (several workers only)."""
        if self._live is not None and self._refresher is None:
            self._refresh_live()

    def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None

    def _refresh_live(self) -> None:
        self._copy_live()
        loop = asyncio.get_running_loop()
        self._refresher = loop.call_later(LIVE_REFRESH_S, self._refresh_live)

    def _copy_live(self) -> None:
        if self._live is None:
            return
        active, pool = self._live
        active.set(self.active_streams)
        state = self.pool_state()
        for name in POOL_STATES:
            pool.labels(name).set(state.get(name, 0))

    def observe_ttfb(self, seconds: float) -> None:
        self.ttfb.observe(seconds)

    def add_usage(self, principal_id: str, usage: object) -> None:
        if not isinstance(usage, dict):
            return
        for kind in ("prompt_tokens", "completion_tokens"):
            value = usage.get(kind)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                self.tokens.labels(principal_id, kind.removesuffix("_tokens")).inc(value)

    def render(self) -> bytes:
        self._copy_live()  # this worker's share is current; the others' at most LIVE_REFRESH_S old
        return generate_latest(self.registry)
