"""The live tab's numbers (``loadtests.webui.LiveSeries``) from a run folder's files, read as
they grow: arrival-second bins, errors, ITL, server CPU, half-written lines left for later."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from loadtests.webui import LiveSeries, table_rows

S = 1_000_000_000


def _record(start_ns: int, ttft_ms: float, ok: bool = True, chunks: list[float] | None = None):
    chunks = chunks if chunks is not None else [ttft_ms, ttft_ms + 10, ttft_ms + 30]
    return {
        "target": "relay", "worker": "w1", "seq": 0, "stream": True, "start_ns": start_ns,
        "ttft_ms": ttft_ms if ok else None, "chunks_ms": chunks if ok else [],
        "e2e_ms": (chunks[-1] if ok and chunks else 5.0), "ok": ok,
        "error": None if ok else "http_5xx",
    }  # fmt: skip


def test_bins_by_arrival_and_reads_only_complete_lines(tmp_path: Path) -> None:
    t0 = time.time_ns() - 10 * S
    (tmp_path / "records").mkdir()
    (tmp_path / "server").mkdir()
    path = tmp_path / "records" / "relay.w1.jsonl"
    lines = [
        _record(t0 + 1 * S, 200.0),  # first token at 1.2 s, ends at 1.23 s
        _record(t0 + 1 * S + 900_000_000, 300.0),  # sent in second 1, first token in second 2
        _record(t0 + 2 * S, 0, ok=False),  # an error ending in second 2
    ]
    torn = orjson.dumps(_record(t0 + 3 * S, 100.0))[:40]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in lines) + torn)
    (tmp_path / "records" / "other.w1.jsonl").write_bytes(orjson.dumps(_record(t0, 1.0)) + b"\n")
    cpu = [{"time_ns": t0 + s * S, "gauges": {"cpu_pct": 10.0 * s}} for s in range(4)]
    cpu.append({"time_ns": t0 + 4 * S, "gap": "process 1 exited"})
    server = tmp_path / "server" / "relay.process.jsonl"
    server.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in cpu))

    metrics = [{"time_ns": t0 + 2 * S, "rates": {"process_cpu_seconds_total": 0.5}}]
    metrics.append({"time_ns": t0 + 3 * S, "gauges": {"g": 1.0}})  # a first sample: no rates
    for name in ("vllm", "relay"):  # relay has a PID: its process samples win
        path_m = tmp_path / "server" / f"{name}.metrics.jsonl"
        path_m.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in metrics))

    live = LiveSeries(tmp_path, "relay")
    assert live.snapshot()["seconds"] == []  # no time zero yet: nothing to show
    live.start(t0)
    live.refresh(users=7)
    snap = live.snapshot()
    series = snap["series"]
    at = snap["seconds"].index
    assert series["ttft_p50"][at(1)] == 200.0 and series["ttft_p50"][at(2)] == 300.0
    assert series["requests_per_s"][at(1)] == 1 and series["requests_per_s"][at(2)] == 2
    assert series["errors_per_s"][at(2)] == 1
    assert series["itl_p95"][at(1)] == pytest.approx(10 + 0.95 * 10)  # gaps 10 and 20 ms
    assert sum(series["requests_per_s"]) == 3  # other targets' files are not read; torn waits
    assert snap["cpu"]["relay"][at(3)] == 30.0  # the gap line is skipped
    assert snap["cpu"]["relay"][at(2)] == 20.0  # not the relay's exported metrics
    assert snap["cpu"]["vllm"][at(2)] == 50.0 and snap["cpu"]["vllm"][at(3)] is None
    assert snap["seconds"][-1] <= 10 - 1  # only complete seconds
    # the torn line completes: read once, from where the last read stopped
    with path.open("ab") as f:
        f.write(orjson.dumps(_record(t0 + 3 * S, 100.0))[40:] + b"\n")
    live.refresh(users=7)
    snap = live.snapshot()
    assert sum(snap["series"]["requests_per_s"]) == 4
    assert set(live.users.values()) == {7}  # sampled at each refresh, shown once complete
    rows = {r["metric"]: r["value"] for r in table_rows(snap)}
    assert rows["relay CPU %"] == 30.0 and rows["TTFT p50 (ms)"] == 100.0
