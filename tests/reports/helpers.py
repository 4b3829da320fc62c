"""Hand-written run folders for exact checks (the synthetic generator covers the big ones)."""

from __future__ import annotations

import json
from pathlib import Path

from relaybench.records import new_record

T0 = 1_790_000_000_000_000_000


def record(target: str = "direct", seq: int = 0, **fields) -> dict:
    """A complete, stamped three-chunk answer (the contract's defaults for everything else)."""
    base = {
        "worker": "w1", "stream": True, "users": 1, "start_ns": T0 + seq * 1_000_000_000,
        "headers_ms": 1.0, "ttft_ms": 100.0, "e2e_ms": 130.0, "chunks_ms": [100.0, 110.0, 130.0],
        "lags_ms": [0.5, 0.25, 0.75], "status": 200, "ok": True, "output_tokens": 3,
        "usage_tokens": 3, "content_chunks": 3, "max_tokens": 3,
    }  # fmt: skip
    return new_record(target=target, seq=seq, **{**base, **fields})


def write_records(run_dir: Path, records: list[dict], name: str = "direct.w1.jsonl") -> Path:
    path = run_dir / "records" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")
    return path


def write_meta(run_dir: Path, **fields) -> None:
    meta = {
        "schema_version": 1, "scenario": "steady", "command": "relaybench run", "seed": 1,
        "started_at": "2026-09-21T12:26:40+00:00", "ended_at": None, "users": 1,
        "duration_s": 10.0, "interrupted": False, "scenario_params": {}, "slo": None,
        "mock": None,
        "targets": {"direct": {"url": "http://127.0.0.1:1", "stream": True, "kind": "mock",
                               "stamps": True, "started_ns": T0, "ended_ns": T0 + 10**10}},
    }  # fmt: skip
    meta.update(fields)
    (run_dir / "run.json").write_text(json.dumps(meta))
