"""The mock's ``GET /mock/stats`` JSON → per-interval values, in the same shape as ``prom.py``.

Live counts (``active_streams``, ``active_requests``, ``queued``) are gauges; every other
top-level number (``requests``, ``completed``, ``chunks``, ...) is a counter since the last
``POST /mock/reset``, turned into a rate. The harness resets the mock before each target, so a
counter that went down (or a ``since_reset_s`` that did) means it restarted from zero in the
interval: its increase is its new value, over the time since the reset. Emission lateness is a
running summary since the reset, kept as gauges ``lateness_p50_ms``/``lateness_p99_ms``/
``lateness_max_ms``.
"""

from __future__ import annotations

from typing import Any

import orjson

GAUGES = ("active_streams", "active_requests", "queued")
SKIP = ("since_reset_s",)


class NotMockStats(ValueError):
    """The body is not the mock's stats JSON."""


def parse(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise NotMockStats(f"not JSON ({exc})") from None
    if not isinstance(data, dict) or "requests" not in data:
        raise NotMockStats("JSON without the mock's counters (no 'requests')")
    return data


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def interval(before: dict[str, Any] | None, now: dict[str, Any], seconds: float) -> dict:
    gauges: dict[str, float] = {}
    rates: dict[str, float] = {}
    for key in GAUGES:
        if (value := _number(now.get(key))) is not None:
            gauges[key] = value
    lateness = now.get("lateness_ms")
    if isinstance(lateness, dict):
        for part in ("p50", "p99", "max"):
            if (value := _number(lateness.get(part))) is not None:
                gauges[f"lateness_{part}_ms"] = value
    if before is not None and seconds > 0:
        since = _number(now.get("since_reset_s"))
        was = _number(before.get("since_reset_s"))
        reset = since is not None and was is not None and since < was
        for key, raw in now.items():
            value = _number(raw)
            if value is None or key in GAUGES or key in SKIP:
                continue
            previous = _number(before.get(key))
            if reset or previous is None or value < previous:
                span = min(seconds, since) if reset and since else seconds
                rates[key] = value / span if span > 0 else 0.0
            else:
                rates[key] = (value - previous) / seconds
    return {"gauges": gauges, "rates": rates, "quantiles": {}}
