"""The relay's metrics, kept and rendered by ``prometheus_client`` (the Prometheus text format).

Each ``Relay`` has its own ``CollectorRegistry`` (no process-global state, so tests can run
several relays in one process). Nothing here runs per streamed chunk: counters move once per
request, and the two values that change all the time (active streams, the upstream pool's busy
and idle connections) are read only when ``/metrics`` is scraped. ``ProcessCollector`` adds the
process's CPU seconds, resident memory, open fds and start time.

Metrics are per process. With ``--workers N`` each worker keeps and serves its own: behind
``SO_REUSEPORT`` a scrape reaches one worker (its ``/health`` says which ``pid``), so scrape
each process, or sum over workers what a run needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "Metrics"]

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
        self.registry = registry = CollectorRegistry()
        self.active_streams = 0  # requests being relayed now (also in /health)
        self.pool_state: Callable[[], dict[str, int]] = dict  # the upstream sets it
        self.requests = Counter(
            "relay_requests",
            "Finished requests by route and status (499: the client left first).",
            ["route", "status"],
            registry=registry,
        )
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
        registry.register(_PoolCollector(self))
        ProcessCollector(registry=registry)

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
        return generate_latest(self.registry)
