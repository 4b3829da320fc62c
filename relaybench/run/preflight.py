"""Pre-flight sanity before an open-loop run: will ``--users`` (the in-flight cap) hold the load?

By Little's law an open-loop run at ``rate`` req/s whose requests take ``E2E`` seconds keeps
``rate × E2E`` requests in flight. When that exceeds the cap, arrivals wait for a free user, the
asked rate is not delivered and the health check flags the run. The expected E2E comes from the
embedded mock's settings (TTFT + mean answer tokens × ITL, unloaded: a lower bound) or, for
``--target`` URLs, from one timed request to each target. A warning is printed (stderr) and the
check is kept in ``run.json`` ``preflight``; the run goes ahead either way.
"""

from __future__ import annotations

import math
import ssl
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

import orjson

from relaybench.run import progress
from relaybench.run.config import Target

if TYPE_CHECKING:
    from relaybench.run.orchestrator import RunPlan

HEADROOM = 1.5  # the --users suggested: this many times the expected in-flight count


def mean_tokens(plan: RunPlan) -> float:
    rng = plan.load.max_tokens
    return (rng[0] + rng[1]) / 2 if rng else float(plan.mock.output_tokens)


def embedded_e2e_s(plan: RunPlan) -> float:
    """The embedded mock's unloaded E2E: TTFT, then one token per ITL."""
    return (plan.mock.ttft_ms + mean_tokens(plan) * plan.mock.itl_ms) / 1e3


def probe_e2e_s(plan: RunPlan, target: Target, stream: bool) -> float:
    """One timed request to ``target`` (raises OSError or ValueError when it fails)."""
    load = plan.load
    body = {
        "model": load.model,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": max(1, round(mean_tokens(plan))),
        "stream": stream,
    }
    headers = {"Content-Type": "application/json", **load.extra_headers}
    if load.api_key:
        headers["Authorization"] = f"Bearer {load.api_key}"
    req = urllib.request.Request(
        target.chat_url, data=orjson.dumps(body), headers=headers, method="POST"
    )
    context = None
    if target.chat_url.startswith("https"):
        context = ssl.create_default_context(cafile=load.ca_file)
        if load.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    started = time.perf_counter()
    with urllib.request.urlopen(req, timeout=load.timeout_s, context=context) as resp:
        resp.read()
    return time.perf_counter() - started


def in_flight_check(rate: float, e2e_s: float, cap: int, source: str) -> dict[str, Any]:
    need = rate * e2e_s
    out = {
        "rate": rate,
        "expected_e2e_s": round(e2e_s, 3),
        "expected_in_flight": round(need, 1),
        "in_flight_cap": cap,
        "source": source,
        "over_cap": need > cap,
    }
    if need > cap:
        out["warning"] = (
            f"--rate {rate:g}/s × expected E2E {e2e_s:.1f} s ({source}) ≈ {need:.0f} requests "
            f"in flight, more than the in-flight cap --users {cap}: arrivals will wait for a "
            f"free user, the asked rate will not be delivered and the health check will flag "
            f"it. Use --users {math.ceil(need * HEADROOM)} or a lower --rate."
        )
    return out


def check(plan: RunPlan) -> list[dict[str, Any]]:
    """Run the pre-flight checks, print their warnings, keep them on ``plan.preflight``."""
    shape = plan.load.shape
    if not shape.open_loop or shape.rate is None:
        return []  # closed loop, or a trace (its rate varies row by row)
    checks = []
    if not plan.targets:
        source = "the embedded mock's TTFT + mean tokens × ITL, unloaded"
        checks.append(in_flight_check(shape.rate, embedded_e2e_s(plan), shape.users, source))
    for target in plan.targets:
        stream = target.name not in plan.buffered
        try:
            e2e = probe_e2e_s(plan, target, stream)
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            progress.warn(f"pre-flight: one request to {target.name} failed ({reason}); no check")
            continue
        result = in_flight_check(shape.rate, e2e, shape.users, f"one request to {target.name}")
        checks.append({"target": target.name, **result})
    for c in checks:
        if "warning" in c:
            progress.warn(c["warning"])
    plan.preflight = checks
    return checks
