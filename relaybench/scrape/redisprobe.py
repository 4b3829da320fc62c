"""A Redis the relay uses for its rate limits: how fast it answers, and how busy it is.

Each poll times one ``PING`` round trip from the harness (``ping_ms``: what any client, the
relay included, waits at least) and reads ``INFO``: ``connected_clients``, ``used_memory_mb``,
``instantaneous_ops_per_sec`` as gauges and ``total_commands_processed`` as a rate. Same shape
as the other sources (``gauges``/``rates``/``quantiles``). redis-py, with the socket timeout set
to the scrape's timeout; a failure is a ``RedisFailed`` with the reason.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from relaybench.scrape.prom import clip


class RedisFailed(Exception):
    """The poll failed; the message says why."""


class RedisProbe:
    def __init__(self, url: str, timeout_s: float) -> None:
        try:
            self._client = redis.Redis.from_url(
                url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
            )
        except ValueError as exc:  # a URL redis-py cannot read
            raise RedisFailed(f"not a Redis URL ({exc})") from None
        self._last: tuple[float, float] | None = None

    def sample(self) -> dict[str, dict[str, Any]]:
        try:
            began = time.perf_counter()
            self._client.ping()
            ping_ms = (time.perf_counter() - began) * 1e3
            info = self._client.info()
        except redis.RedisError as exc:
            raise RedisFailed(f"{type(exc).__name__}: {clip(str(exc))}") from None
        now = time.monotonic()
        gauges = {
            "ping_ms": round(ping_ms, 3),
            "connected_clients": float(info.get("connected_clients", 0)),
            "used_memory_mb": round(float(info.get("used_memory", 0)) / 2**20, 2),
            "ops_per_s": float(info.get("instantaneous_ops_per_sec", 0)),
        }
        rates: dict[str, float] = {}
        commands = float(info.get("total_commands_processed", 0))
        if self._last is not None and now > self._last[0] and commands >= self._last[1]:
            rates["commands"] = (commands - self._last[1]) / (now - self._last[0])
        self._last = (now, commands)
        return {"gauges": gauges, "rates": rates, "quantiles": {}}
