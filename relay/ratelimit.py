"""Per-principal rate limits: GCRA requests-per-minute, and a cap on concurrent requests.

GCRA (the generic cell rate algorithm) keeps one number per key, the theoretical arrival time
``tat``. With ``interval = 60 s // rpm`` and ``tau = rpm * interval`` (both whole microseconds),
a request at ``now`` is admitted when ``max(tat, now) + interval - now <= tau``, and then ``tat``
advances by ``interval``. A burst of N simultaneous requests on a fresh key admits exactly
``rpm`` of them; afterwards one more every ``interval``. All arithmetic is on integers (exact in
Python and in Redis's Lua doubles, which hold integers up to 2**53 exactly), so the count is
exact, with no float slack that could admit one request too many.

``MemoryBackend`` holds ``tat`` in this process. ``RedisBackend`` runs the same step as ONE Lua
script, reading Redis's own clock, so any number of relay processes share each key's limit
atomically with no over-admission. Redis trouble never hangs a request: short socket timeouts,
no client retries, and for ``--redis-retry-ms`` after a failure Redis is not even tried; the
configured policy (fail open: admit, or fail closed: 503) applies, is logged, and is counted.

The concurrent cap (``StreamSlots``) is per relay process.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from relay.auth import Principal
from relay.errors import RateLimited, Unavailable
from relay.metrics import Metrics

log = logging.getLogger("relay.ratelimit")

PERIOD_US = 60_000_000


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: float  # until the key is fully replenished
    retry_after_s: float  # until the next request would be admitted (0 when allowed)

    def header_pairs(self) -> list[tuple[bytes, bytes]]:
        return [(k.lower().encode(), v.encode()) for k, v in self.headers().items()]

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(self.reset_s)),
        }


def gcra_step(tat: int | None, now: int, rpm: int) -> tuple[Decision, int | None]:
    """One GCRA step in integer microseconds. Returns the decision and the new ``tat``."""
    interval = max(1, PERIOD_US // rpm)
    tau = interval * rpm
    base = now if tat is None or tat < now else tat
    new_tat = base + interval
    if new_tat - now > tau:
        return Decision(False, rpm, 0, (base - now) / 1e6, (new_tat - tau - now) / 1e6), None
    remaining = (tau - (new_tat - now)) // interval
    return Decision(True, rpm, remaining, (new_tat - now) / 1e6, 0.0), new_tat


def gcra_peek(tat: int | None, now: int, rpm: int) -> Decision:
    """The key's budget at ``now`` without using any of it (for answers that charge nothing)."""
    interval = max(1, PERIOD_US // rpm)
    tau = interval * rpm
    base = now if tat is None or tat < now else tat
    remaining = max(0, (tau - (base - now)) // interval)
    retry_after = 0.0 if remaining else (base + interval - tau - now) / 1e6
    return Decision(remaining > 0, rpm, remaining, (base - now) / 1e6, retry_after)


class MemoryBackend:
    name = "memory"

    def __init__(self) -> None:
        self._tat: dict[str, int] = {}

    async def hit(self, key: str, rpm: int) -> Decision:
        now = time.monotonic_ns() // 1000
        decision, new_tat = gcra_step(self._tat.get(key), now, rpm)
        if new_tat is not None:
            self._tat[key] = new_tat
            if len(self._tat) > 100_000:  # drop keys that are fully replenished
                self._tat = {k: t for k, t in self._tat.items() if t > now}
        return decision

    async def peek(self, key: str, rpm: int) -> Decision:
        return gcra_peek(self._tat.get(key), time.monotonic_ns() // 1000, rpm)

    async def close(self) -> None:
        return None


# KEYS[1] = the key; ARGV[1] = rpm. Both scripts start from the same state, read the same way:
# the emission interval and burst (tau) of the plan, Redis's clock (TIME), the key's TAT, in µs.
_GCRA_STATE_LUA = """
local rpm = tonumber(ARGV[1])
local interval = math.max(1, math.floor(60000000 / rpm))
local tau = interval * rpm
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
"""

# gcra_step in Lua. Returns {allowed, remaining, reset_us, retry_after_us} as strings: exact,
# whatever the size.
_GCRA_LUA = (
    _GCRA_STATE_LUA
    + """
local new_tat = tat + interval
if new_tat - now > tau then
  return {'0', '0', string.format('%.0f', tat - now), string.format('%.0f', new_tat - tau - now)}
end
local ttl = math.ceil((new_tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl)
return {'1', string.format('%.0f', math.floor((tau - (new_tat - now)) / interval)),
        string.format('%.0f', new_tat - now), '0'}
"""
)


# gcra_peek in Lua: read only. Returns {remaining, reset_us, retry_after_us}.
_PEEK_LUA = (
    _GCRA_STATE_LUA
    + """
local remaining = math.max(0, math.floor((tau - (tat - now)) / interval))
local retry = 0
if remaining == 0 then retry = tat + interval - tau - now end
return {string.format('%.0f', remaining), string.format('%.0f', tat - now),
        string.format('%.0f', retry)}
"""
)


class BackendError(Exception):
    """The shared backend could not answer (Redis down, hung, or refusing)."""


class RedisBackend:
    name = "redis"

    def __init__(self, url: str, timeout_s: float) -> None:
        import redis.asyncio as aioredis  # only relays with --redis-url pay for the import
        import redis.exceptions
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self._errors = (redis.exceptions.RedisError, OSError, TimeoutError)
        self.client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self.timeout_s = timeout_s
        self._script = self.client.register_script(_GCRA_LUA)
        self._peek = self.client.register_script(_PEEK_LUA)

    async def _run(self, script, key: str, rpm: int) -> list[bytes]:
        try:
            # The outer timeout is a backstop: socket timeouts should fire first.
            async with asyncio.timeout(self.timeout_s * 2 + 0.05):
                return await script(keys=[f"relay:rl:{key}"], args=[rpm])
        except self._errors as exc:
            raise BackendError(type(exc).__name__) from exc

    async def hit(self, key: str, rpm: int) -> Decision:
        allowed, remaining, reset_us, retry_us = await self._run(self._script, key, rpm)
        return Decision(
            allowed == b"1",
            rpm,
            int(remaining),
            float(reset_us) / 1e6,
            float(retry_us) / 1e6,
        )

    async def peek(self, key: str, rpm: int) -> Decision:
        remaining, reset_us, retry_us = await self._run(self._peek, key, rpm)
        count = int(remaining)
        return Decision(count > 0, rpm, count, float(reset_us) / 1e6, float(retry_us) / 1e6)

    async def close(self) -> None:
        await self.client.aclose()


class RateLimiter:
    """Applies a principal's plan: GCRA through the backend, with the fail-open/closed policy."""

    def __init__(
        self,
        backend: MemoryBackend | RedisBackend,
        metrics: Metrics,
        fail_open: bool,
        backend_retry_s: float,
    ) -> None:
        self.backend = backend
        self.metrics = metrics
        self.fail_open = fail_open
        self.backend_retry_s = backend_retry_s
        self._skip_until = 0.0
        self._failures_unlogged = 0
        self._logged_at = -math.inf

    async def check(self, principal: Principal) -> Decision | None:
        """Admit or raise RateLimited/Unavailable. None: no limit applies (or failed open)."""
        rpm = principal.plan.rpm
        if rpm <= 0:
            return None
        now = time.monotonic()
        if now < self._skip_until:
            return self._backend_down(now, None)
        try:
            decision = await self.backend.hit(principal.id, rpm)
        except BackendError as exc:
            self._skip_until = time.monotonic() + self.backend_retry_s
            return self._backend_down(time.monotonic(), exc)
        if not decision.allowed:
            self.metrics.rate_limited.inc()
            retry_after = max(1, math.ceil(decision.retry_after_s))
            raise RateLimited(
                f"rate limit of {rpm} requests per minute exceeded (plan {principal.plan.name})",
                headers={"Retry-After": str(retry_after), **decision.headers()},
                retry_after_s=decision.retry_after_s,
            )
        return decision

    async def peek(self, principal: Principal) -> Decision | None:
        """The principal's budget without charging it; None when no limit applies or the
        backend cannot say (an error answer is never held up or failed by this)."""
        rpm = principal.plan.rpm
        if rpm <= 0 or time.monotonic() < self._skip_until:
            return None
        try:
            return await self.backend.peek(principal.id, rpm)
        except BackendError:
            return None

    def _backend_down(self, now: float, exc: BaseException | None) -> None:
        self.metrics.ratelimit_backend_errors.inc()
        self._failures_unlogged += 1
        if exc is not None and now - self._logged_at >= 5.0:
            log.warning(
                "rate-limit backend unavailable; failing %s",
                "open" if self.fail_open else "closed",
                extra={"error": str(exc), "failures": self._failures_unlogged},
            )
            self._logged_at, self._failures_unlogged = now, 0
        if self.fail_open:
            return None
        raise Unavailable(
            "the rate limiter is unavailable",
            code="ratelimit_unavailable",
            headers={"Retry-After": "1"},
        )

    async def close(self) -> None:
        await self.backend.close()


class StreamSlots:
    """Concurrent requests per principal (this process), capped by the plan's ``max_streams``."""

    def __init__(self, metrics: Metrics) -> None:
        self._active: dict[str, int] = {}
        self.metrics = metrics

    @contextmanager
    def hold(self, principal: Principal) -> Iterator[None]:
        cap = principal.plan.max_streams
        active = self._active.get(principal.id, 0)
        if cap and active >= cap:
            self.metrics.rate_limited.inc()
            raise RateLimited(
                f"at most {cap} concurrent requests per key (plan {principal.plan.name})",
                code="too_many_concurrent_requests",
                headers={"Retry-After": "1"},
            )
        self._active[principal.id] = active + 1
        try:
            yield
        finally:
            left = self._active[principal.id] - 1
            if left:
                self._active[principal.id] = left
            else:
                del self._active[principal.id]
