"""Synthetic run folders with known properties, for the tests and the report benchmark.

The latency model is deliberately simple so that tests can predict the numbers: TTFT is
lognormal around ``ttft_ms`` while users stay at or below ``knee_users`` and grows by
``ms_per_user_over_knee`` for every user beyond it; chunks arrive every ``itl_ms`` (jittered);
a relay adds ``relay_lag_ms`` to every chunk's lag. Requests per step follow Little's law
(``users * seconds / e2e``), so throughput flattens past the knee.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from relaybench.records import HTTP_429, new_record

T0_NS = 1_790_000_000_000_000_000  # a fixed Unix time (2026-09) so reports are reproducible


@dataclass
class SyntheticTarget:
    name: str
    kind: str = "mock"  # "mock" (direct), "relay" or "external"
    stream: bool = True
    stamps: bool = True
    relay_lag_ms: float = 0.0


DEFAULT_TARGETS = (
    SyntheticTarget("direct"),
    SyntheticTarget("relay", kind="relay", relay_lag_ms=1.5),
    SyntheticTarget("relay-buffered", kind="relay", stream=False, relay_lag_ms=1.5),
)


@dataclass
class SyntheticRun:
    steps: Sequence[tuple[int, float]] = ((10, 5.0),)  # (users, seconds) per step
    scenario: str = "steady"
    targets: Sequence[SyntheticTarget] = DEFAULT_TARGETS
    ttft_ms: float = 200.0
    itl_ms: float = 20.0
    tokens: int = 16
    knee_users: int | None = None
    ms_per_user_over_knee: float = 40.0
    error_rate: float = 0.0
    open_loop_rate: float | None = None  # req/s: records carry intended_ns and rate
    schedule_lag_ms: float = 0.3
    loadgen_cpu_pct: float = 30.0
    mock_lateness_p99_ms: float = 0.5
    seed: int = 1
    workers: int = 1
    slo: dict | None = field(default_factory=lambda: {"ttft_ms_p95": 1000.0, "error_rate": 0.01})


def write_run(run_dir: Path, spec: SyntheticRun | None = None, *, max_requests: int | None = None):
    """Write a complete run folder; returns the number of records written per target."""
    spec = spec or SyntheticRun()
    run_dir = Path(run_dir)
    for sub in ("records", "loadgen", "mock_stats"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    total_s = sum(seconds for _, seconds in spec.steps)
    targets_meta: dict = {}
    counts: dict[str, int] = {}
    clock = T0_NS
    for target in spec.targets:
        started = clock
        n = _write_target(run_dir, spec, target, started, rng, max_requests)
        counts[target.name] = n
        ended = started + int(total_s * 1e9)
        targets_meta[target.name] = {
            "url": f"http://127.0.0.1:9/{target.name}",
            "stream": target.stream,
            "kind": target.kind,
            "stamps": target.stamps,
            "started_ns": started,
            "ended_ns": ended,
        }
        _write_loadgen(run_dir, spec, target, started, total_s, rng)
        clock = ended + 1_000_000_000
    meta = {
        "schema_version": 1,
        "scenario": spec.scenario,
        "command": "relaybench run --synthetic",
        "started_at": "2026-09-21T12:26:40+00:00",
        "ended_at": "2026-09-21T12:30:00+00:00",
        "seed": spec.seed,
        "users": max(users for users, _ in spec.steps),
        "duration_s": float(total_s),
        "interrupted": False,
        "scenario_params": {
            "steps": [{"users": u, "seconds": s} for u, s in spec.steps],
            **({"rate": spec.open_loop_rate} if spec.open_loop_rate else {}),
        },
        "slo": spec.slo,
        "mock": {"ttft_ms": spec.ttft_ms, "itl_ms": spec.itl_ms, "output_tokens": spec.tokens},
        "targets": targets_meta,
        "environment": {
            "python": "3.11.2",
            "platform": "synthetic",
            "cpus": 2,
            "versions": {"relaybench": "0.1.0"},
            "processes": spec.workers,
        },
    }
    (run_dir / "run.json").write_text(json.dumps(meta, indent=2))
    return counts


def _write_target(run_dir, spec, target, started, rng, max_requests) -> int:
    lines_per_worker: list[list[bytes]] = [[] for _ in range(spec.workers)]
    offset_s = 0.0
    written = 0
    ok_total = 0
    rejected = 0
    for step, (users, seconds) in enumerate(spec.steps):
        over = max(0, users - spec.knee_users) if spec.knee_users is not None else 0
        ttft_median = spec.ttft_ms + over * spec.ms_per_user_over_knee
        e2e_s = (ttft_median + spec.itl_ms * (spec.tokens - 1)) / 1000
        if spec.open_loop_rate:
            n = int(spec.open_loop_rate * seconds)
        else:
            n = max(1, round(users * seconds / e2e_s))
        if max_requests is not None:
            n = min(n, max_requests - written)
        if n <= 0:
            break
        step_start = started + int(offset_s * 1e9)
        if spec.open_loop_rate:
            intended = step_start + (np.arange(n) / spec.open_loop_rate * 1e9).astype(np.int64)
            send = intended + (rng.exponential(spec.schedule_lag_ms, n) * 1e6).astype(np.int64)
        else:
            intended = None
            send = step_start + np.sort(rng.uniform(0, seconds * 1e9, n)).astype(np.int64)
        ttft = ttft_median * rng.lognormal(0.0, 0.25, n)
        gaps = spec.itl_ms * rng.lognormal(0.0, 0.2, (n, spec.tokens - 1))
        chunks = np.concatenate([ttft[:, None], ttft[:, None] + np.cumsum(gaps, axis=1)], axis=1)
        lag_first = rng.exponential(0.3, n) + 0.1 + target.relay_lag_ms
        lags = rng.exponential(0.3, (n, spec.tokens)) + 0.1 + target.relay_lag_ms
        lags[:, 0] = lag_first
        failed = rng.random(n) < spec.error_rate
        e2e = chunks[:, -1] + rng.uniform(0.1, 1.0, n)
        if not target.stream:
            ttft = e2e.copy()
        rejected += int(failed.sum())
        ok_total += int((~failed).sum())
        lines = _lines(spec, target, step, users, send, intended, ttft, e2e, chunks, lags, failed)
        for i, line in enumerate(lines):
            lines_per_worker[i % spec.workers].append(line)
        written += n
        offset_s += seconds
    for w, lines in enumerate(lines_per_worker):
        path = run_dir / "records" / f"{target.name}.w{1000 + w}.jsonl"
        with path.open("wb") as fh:
            fh.write(b"".join(lines))
    if target.stamps:
        stats = {
            "requests": written if target.kind == "mock" else ok_total,
            "active_streams": 0,
            "completed": ok_total,
            "cancelled": 0,
            "rejected": rejected if target.kind == "mock" else 0,
            "faults": rejected if target.kind == "mock" else 0,
            "lateness_ms": {"p50": 0.1, "p99": spec.mock_lateness_p99_ms, "max": 1.0},
        }
        (run_dir / "mock_stats" / f"{target.name}.json").write_text(json.dumps(stats))
    return written


def _lines(spec, target, step, users, send, intended, ttft, e2e, chunks, lags, failed):
    n = send.size
    tokens = spec.tokens
    send_l = send.tolist()
    intended_l = intended.tolist() if intended is not None else [None] * n
    ttft_l = np.round(ttft, 3).tolist()
    e2e_l = np.round(e2e, 3).tolist()
    chunks_l = np.round(chunks, 3).tolist()
    lags_l = np.round(lags, 4).tolist()
    failed_l = failed.tolist()
    base = new_record(
        target=target.name, worker="w1000", seq=0, stream=target.stream, users=users, step=step,
        rate=spec.open_loop_rate, start_ns=0, max_tokens=tokens,
    )  # fmt: skip
    failure = {
        **base, "headers_ms": 2.0, "e2e_ms": 2.5, "status": 429, "error": HTTP_429,
        "error_detail": "rate limited",
    }  # fmt: skip
    out = []
    for i in range(n):
        if failed_l[i]:
            record = {**failure, "seq": i, "intended_ns": intended_l[i], "start_ns": send_l[i]}
        else:
            if target.stream:
                chunk_list = chunks_l[i]
                lag_list = lags_l[i] if target.stamps else None
            else:
                chunk_list = [e2e_l[i]]
                lag_list = [lags_l[i][0]] if target.stamps else None
            record = {
                **base, "seq": i, "intended_ns": intended_l[i], "start_ns": send_l[i],
                "headers_ms": 1.0 if target.stream else e2e_l[i], "ttft_ms": ttft_l[i],
                "e2e_ms": e2e_l[i], "chunks_ms": chunk_list, "lags_ms": lag_list, "status": 200,
                "ok": True, "output_tokens": tokens, "usage_tokens": tokens,
                "content_chunks": len(chunk_list),
            }  # fmt: skip
        out.append(orjson.dumps(record) + b"\n")
    return out


def _write_loadgen(run_dir, spec, target, started, total_s, rng) -> None:
    samples = max(1, int(total_s))
    cpu = np.clip(rng.normal(spec.loadgen_cpu_pct, 3.0, samples), 0, None)
    users = np.concatenate([np.full(int(s), u) for u, s in spec.steps])[:samples]
    users = np.pad(users, (0, samples - users.size), mode="edge")
    path = run_dir / "loadgen" / f"{target.name}.w1000.jsonl"
    with path.open("wb") as fh:
        for i in range(samples):
            sample = {
                "t_ns": started + (i + 1) * 1_000_000_000,
                "worker": "w1000",
                "cpu_pct": round(float(cpu[i]), 1),
                "rss_mb": 80.0,
                "users": int(users[i]),
            }
            fh.write(orjson.dumps(sample) + b"\n")
