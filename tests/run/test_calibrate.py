"""Calibration's verdicts: which level held, what broke, and why."""

from __future__ import annotations

import json
from pathlib import Path

from relaybench.run.calibrate import capacity, level_row, precision_text


def write_level(tmp: Path, cpu: list[float], lateness_p99: float) -> Path:
    (tmp / "loadgen").mkdir(parents=True)
    (tmp / "mock_stats").mkdir()
    rows = [
        {"t_ns": i, "worker": "w1", "cpu_pct": c, "rss_mb": 50, "users": 5}
        for i, c in enumerate(cpu)
    ]
    rows.append(
        {"t_ns": 99, "worker": "w1", "cpu_pct": 400.0, "rss_mb": 50, "users": 0}
    )  # idle: ignored
    (tmp / "loadgen" / "direct.w1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp / "mock_stats" / "direct.json").write_text(
        json.dumps({"lateness_ms": {"p99": lateness_p99}})
    )
    return tmp


def summary(chunk_p99: float, error_rate: float = 0.0) -> dict:
    lag = {"p50": 0.2, "p99": chunk_p99, "max": chunk_p99 * 2}
    return {
        "targets": {
            "direct": {
                "requests": 100,
                "error_rate": error_rate,
                "requests_per_s": 20.0,
                "output_tokens_per_s": 800.0,
                "first_token_lag_ms": lag,
                "chunk_lag_ms": lag,
            }
        }
    }


def test_a_level_that_holds(tmp_path: Path) -> None:
    row = level_row(10, write_level(tmp_path, [20, 30], 1.0), summary(1.5), "direct")
    assert row["broken"] == []
    assert row["loadgen_cpu_pct"] == {"mean": 25.0, "max": 30.0}
    assert row["chunks_per_s"] == 800.0 and row["chunk_lag_ms"]["p99"] == 1.5


def test_each_way_of_breaking_is_named(tmp_path: Path) -> None:
    row = level_row(500, write_level(tmp_path, [95, 97], 45.0), summary(9.0, 0.02), "direct")
    assert row["imprecise"] == ["chunk lag p99 9.0 ms > 5"]
    text = " | ".join(row["broken"])
    assert "CPU 96%" in text
    assert "error rate 2.0%" in text
    assert row["mock_bound"] == ["the mock fell behind (lateness p99 45 ms)"]


def test_capacity_is_the_last_level_that_held() -> None:
    rows = [
        {"streams": 10, "chunks_per_s": 400.0, "broken": [], "imprecise": []},
        {"streams": 100, "chunks_per_s": 4000.0, "broken": [], "imprecise": ["lag"]},
        {"streams": 250, "chunks_per_s": 8000.0, "broken": ["CPU 97% > 90%"], "imprecise": []},
    ]
    cap = capacity(rows)
    assert cap["streams_per_process"] == 100 and cap["chunks_per_s_per_process"] == 4000.0
    assert cap["precise_up_to_streams"] == 10 and cap["imprecise_at"] == {"100": ["lag"]}
    assert cap["broke_at_streams"] == 250 and cap["broke_because"] == rows[2]["broken"]
    assert precision_text(cap) == "chunk lag p99 <= 5 ms up to 10 streams"
    assert capacity([])["streams_per_process"] == 0
    imprecise = capacity([{**rows[1], "streams": 250}])
    assert precision_text(imprecise) == "chunk lag p99 over 5 ms at every level that held"
    assert precision_text(capacity([rows[2]])) == "no level held, so no precision either"
    # a level where only the mock fell behind still counts as held by the harness
    mock_limited = [{**rows[0], "mock_bound": ["the mock fell behind (lateness p99 30 ms)"]}]
    cap = capacity(mock_limited)
    assert cap["streams_per_process"] == 10 and cap["mock_bound_at_streams"] == 10
