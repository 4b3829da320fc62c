"""The summary's server block from samples: peak CPU, CPU seconds per request, RSS, fds."""

from __future__ import annotations

import pytest

from relaybench.scrape.samples import SourceSamples
from relaybench.scrape.usage import server_block

S = 1_000_000_000
T0 = 1_700_000_000 * S


def _process(name: str) -> SourceSamples:
    rows = []
    for i in range(12):  # one sample a second; 0.5 CPU-s per second from t=2 s
        cpu_s = 1.0 + 0.5 * max(0, i - 2)
        rows.append(
            {
                "time_ns": T0 + i * S,
                "gauges": {
                    "cpu_pct": 50.0 if i > 2 else 1.0,
                    "cpu_s": cpu_s,
                    "rss_mb": 40.0 + i,
                    "fds": 10.0 + i,
                    "threads": 3.0,
                },
            }
        )
    return SourceSamples(f"{name}.process", name, "process", rows, [{"time_ns": T0 + 5 * S}])


def test_cpu_per_request_and_per_thousand_chunks_over_the_window() -> None:
    block = server_block(
        {"relay.process": _process("relay")}, T0 + 2 * S, T0 + 10 * S, requests=40, chunks=2000
    )["relay"]
    assert block["cpu_s"] == pytest.approx(4.0)  # from the sample at 2 s (before) to 10 s
    assert block["cpu_s_per_request"] == pytest.approx(0.1)
    assert block["cpu_s_per_1k_chunks"] == pytest.approx(2.0)
    assert block["peak_cpu_pct"] == 50.0
    assert block["peak_rss_mb"] == 50.0
    assert (block["fds_start"], block["fds_end"]) == (12, 20)
    assert block["threads_max"] == 3 and block["gaps"] == 1


def test_a_server_without_a_pid_uses_its_exported_process_metrics() -> None:
    rows = [
        {
            "time_ns": T0 + i * S,
            "interval_s": 1.0,
            "rates": {"process_cpu_seconds_total": 0.25},
            "gauges": {"process_resident_memory_bytes": 100 * 2**20, "process_open_fds": 9},
        }
        for i in range(1, 6)
    ]
    src = SourceSamples("vllm.metrics", "vllm", "metrics", rows)
    block = server_block({"vllm.metrics": src}, T0, T0 + 10 * S, requests=5, chunks=0)["vllm"]
    assert block["peak_cpu_pct"] == pytest.approx(25.0)
    assert block["cpu_s"] == pytest.approx(1.25)
    assert block["cpu_s_per_request"] == pytest.approx(0.25)
    assert block["cpu_s_per_1k_chunks"] is None
    assert block["peak_rss_mb"] == 100.0


def test_servers_without_samples_in_the_window_are_left_out() -> None:
    plain = SourceSamples("x.metrics", "x", "metrics", [{"time_ns": T0, "gauges": {"g": 1}}])
    assert server_block({"x.metrics": plain}, T0, T0 + S, requests=1, chunks=1) == {}


def test_zero_cpu_seconds_is_a_measurement_not_a_missing_one() -> None:
    rows = [
        {"time_ns": T0 + i * S, "gauges": {"cpu_pct": 0.0, "cpu_s": 2.0, "rss_mb": 40.0}}
        for i in range(6)
    ]  # an idle server: its CPU seconds did not move
    src = SourceSamples("idle.process", "idle", "process", rows)
    block = server_block({"idle.process": src}, T0 + S, T0 + 5 * S, requests=10, chunks=500)
    block = block["idle"]
    assert block["cpu_s"] == 0.0
    assert block["cpu_s_per_request"] == 0.0 and block["cpu_s_per_1k_chunks"] == 0.0


def test_a_scrape_only_server_whose_every_poll_failed_is_kept_with_its_gaps() -> None:
    good = {
        "time_ns": T0,
        "interval_s": 1.0,
        "rates": {"process_cpu_seconds_total": 0.5},
        "gauges": {"process_resident_memory_bytes": 50 * 2**20},
    }
    gaps = [{"time_ns": T0 + i * S, "gap": "timeout"} for i in range(2, 6)]
    src = SourceSamples("vllm.metrics", "vllm", "metrics", [good], gaps)
    block = server_block({"vllm.metrics": src}, T0 + S, T0 + 6 * S, requests=3, chunks=9)
    assert block["vllm"]["samples"] == 0 and block["vllm"]["gaps"] == 4
    assert block["vllm"]["cpu_s"] is None and block["vllm"]["cpu_s_per_request"] is None
    # as a process source with only gaps is
    proc = SourceSamples("relay.process", "relay", "process", [], gaps)
    kept = server_block({"relay.process": proc}, T0 + S, T0 + 6 * S, requests=3, chunks=9)
    assert kept["relay"]["samples"] == 0 and kept["relay"]["gaps"] == 4
