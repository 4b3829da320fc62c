"""Pre-flight sanity before an open-loop run: will ``--users`` (the in-flight cap) hold the load?

By Little's law an open-loop run at ``rate`` req/s whose requests take ``E2E`` seconds keeps
``rate × E2E`` requests in flight. When that exceeds the cap, arrivals wait for a free user, the
asked rate is not delivered and the health check flags the run. The expected E2E comes from the
embedded mock's settings (TTFT, then ITL before each token after the first, unloaded: a lower
bound) or, for ``--target`` URLs, from one timed request to each target. A trace's rate varies
row by row, so against the embedded mock its check sweeps the schedule itself (the arrivals that
``--duration`` sends): each is in flight from its offset for the mock's unloaded E2E of that
row's answer, and the peak count is set against the cap. Against ``--target`` URLs a trace gets
no check: one timed request says nothing of the rows' answer lengths there. A warning is printed
(stderr) and the check is kept in ``run.json`` ``preflight``; the run goes ahead either way.
"""

from __future__ import annotations

import math
import ssl
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from relaybench.run import progress
from relaybench.run.config import Target

if TYPE_CHECKING:
    from relaybench.run.orchestrator import RunPlan

HEADROOM = 1.5  # the --users suggested: this many times the expected in-flight count


def mean_tokens(plan: RunPlan) -> float:
    rng = plan.load.max_tokens
    return (rng[0] + rng[1]) / 2 if rng else float(plan.mock.output_tokens)


def answer_s(plan: RunPlan, tokens: float | np.ndarray) -> float | np.ndarray:
    """The embedded mock's unloaded E2E of an answer: TTFT, then a gap of ITL before each token
    after the first."""
    return (plan.mock.ttft_ms + np.maximum(tokens - 1, 0) * plan.mock.itl_ms) / 1e3


def embedded_e2e_s(plan: RunPlan) -> float:
    """The embedded mock's unloaded E2E of a mean answer."""
    return float(answer_s(plan, mean_tokens(plan)))


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


def peak_in_flight(offset_s: np.ndarray, e2e_s: np.ndarray) -> tuple[int, float]:
    """The most requests in flight at once, and when (seconds from the start), when each one
    starts at its offset and lasts its E2E."""
    if not len(offset_s):
        return 0, 0.0
    order = np.argsort(offset_s, kind="stable")
    starts = offset_s[order]
    ends = np.sort(starts + e2e_s[order])
    # just after the i-th start: i + 1 started, minus those already ended
    counts = np.arange(1, len(starts) + 1) - np.searchsorted(ends, starts, side="right")
    i = int(np.argmax(counts))
    return int(counts[i]), float(starts[i])


def trace_check(plan: RunPlan) -> dict[str, Any]:
    """The trace schedule against the in-flight cap, with the embedded mock's E2E per row."""
    shape = plan.load.shape
    schedule = plan.load.traffic.schedule(plan.load.seed)
    sent = schedule.offset_s < shape.duration_s  # a shorter --duration sends only these
    e2e = answer_s(plan, schedule.output_tokens[sent].astype(float))
    need, at = peak_in_flight(schedule.offset_s[sent], np.asarray(e2e))
    source = "the trace's arrivals, each for the embedded mock's unloaded E2E of its answer"
    out = {
        "expected_peak_in_flight": need,
        "peak_at_s": round(at, 1),
        "in_flight_cap": shape.users,
        "source": source,
        "over_cap": need > shape.users,
    }
    if need > shape.users:
        out["warning"] = (
            f"the trace keeps about {need} requests in flight at its busiest (at {at:.0f} s; "
            f"{source}), more than the in-flight cap --users {shape.users}: arrivals will wait "
            f"for a free user, the trace's rate will not be delivered and the health check will "
            f"flag it. Use --users {math.ceil(need * HEADROOM)}, or a lower --rate-scale or "
            f"--speedup."
        )
    return out


def check(plan: RunPlan) -> list[dict[str, Any]]:
    """Run the pre-flight checks, print their warnings, keep them on ``plan.preflight``."""
    shape = plan.load.shape
    if shape.scenario == "trace" and not plan.targets:
        checks = [trace_check(plan)]
    elif not shape.open_loop or shape.rate is None:
        return []  # closed loop, or a trace against --target URLs
    else:
        checks = _rate_checks(plan)
    for c in checks:
        if "warning" in c:
            progress.warn(c["warning"])
    plan.preflight = checks
    return checks


def _rate_checks(plan: RunPlan) -> list[dict[str, Any]]:
    shape = plan.load.shape
    assert shape.rate is not None
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
    return checks
