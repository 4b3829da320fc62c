"""Server samples in a run folder → summary.json's server block, health's leak watch, the
report's notes and the timeline's server rows, on a synthetic run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import orjson

from reports.folder import load_folder
from reports.summary import write_summary
from reports.synthetic import SyntheticRun, write_run
from reports.timeseries import per_second

S = 1_000_000_000


def _write_samples(run: Path, *, rss_growth_per_s: float) -> None:
    """One relay process sample a second over every target's window, plus its /metrics."""
    meta = json.loads((run / "run.json").read_text())
    server = run / "server"
    server.mkdir()
    rng = np.random.default_rng(3)
    process, metrics = [], []
    cpu_s = 0.0
    for target in meta["targets"].values():
        started, ended = target["started_ns"], target["ended_ns"]
        for i, t in enumerate(range(started - S, ended + S, S)):
            cpu_s += 0.25
            rss = 60 + rss_growth_per_s * i + rng.normal(0, 0.2)
            gauges = {"cpu_pct": 25.0, "cpu_s": cpu_s, "rss_mb": rss, "fds": 20.0, "threads": 2.0}
            process.append({"time_ns": t, "mono_ns": t, "gauges": gauges})
            metrics.append(
                {
                    "time_ns": t,
                    "mono_ns": t,
                    "interval_s": 1.0,
                    "gauges": {"relay_active_streams": 7.0},
                    "rates": {"relay_rate_limited_total": 0.5},
                    "quantiles": {"relay_upstream_first_byte_seconds": {"p95": 0.012}},
                }
            )
    (server / "relay.process.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in process))
    lines = b"".join(orjson.dumps(r) + b"\n" for r in metrics)
    (server / "relay.metrics.jsonl").write_bytes(lines + b'{"time_ns": 1, "torn')
    status = {
        "interval_s": 1.0,
        "sources": [
            {"name": "relay.process", "address": "pid 1", "samples": len(process), "gaps": 0,
             "first_error": None, "ended": None},
            {"name": "vllm.metrics", "address": "http://127.0.0.1:9/metrics", "samples": 0,
             "gaps": 40, "first_error": "unreachable ([Errno 111] Connection refused)",
             "ended": None},
        ],
    }  # fmt: skip
    (server / "sources.json").write_text(json.dumps(status))


def test_server_block_leak_watch_notes_and_timeline_columns(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_run(run, SyntheticRun(scenario="soak", steps=((10, 60.0),)))
    _write_samples(run, rss_growth_per_s=0.2)  # +12 MiB a minute: a leak
    summary = write_summary(run)
    for name, target in summary["targets"].items():
        block = target["server"]["relay"]
        assert block["peak_cpu_pct"] == 25.0
        assert block["cpu_s"] > 0
        # 0.25 CPU-s a second over the window, shared by the target's requests
        expected = block["cpu_s"] / target["requests"]
        assert block["cpu_s_per_request"] == round(expected, 6), name
        assert (block["fds_start"], block["fds_end"]) == (20, 20)
        assert block["leak"]["rss_mb"]["leak"] is True
        assert block["leak"]["fds"]["leak"] is False
    health = summary["health"]
    assert not health["degraded"]  # a leak is a finding about the target, not the measurement
    assert len(health["leaks"]) == len(summary["targets"])
    assert "memory (RSS) grew steadily" in health["leaks"][0]
    assert any(c.startswith("leak watch") for c in health["checked"])
    notes = " ".join(summary["notes"])
    assert "vllm.metrics" in notes and "never answered" in notes and "unreachable" in notes
    assert "relay.metrics: 1 unreadable lines skipped" in notes
    series = per_second(load_folder(run))
    for column in ("cpu_pct:relay", "rss_mb:relay", "active_streams:relay",
                   "rate_limited_per_s:relay", "upstream_ttfb_p95_ms:relay"):  # fmt: skip
        assert series[column].notna().sum() > 50, column
    assert series["upstream_ttfb_p95_ms:relay"].dropna().iloc[0] == 12.0


def test_a_flat_server_is_not_flagged_and_a_peak_run_is_not_judged(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    write_run(flat, SyntheticRun(scenario="steady", steps=((10, 60.0),)))
    _write_samples(flat, rss_growth_per_s=0.0)
    health = write_summary(flat)["health"]
    assert health["leaks"] == [] and any("no steady growth" in c for c in health["checked"])
    peak = tmp_path / "peak"
    write_run(peak, SyntheticRun(scenario="peak", steps=((10, 60.0),)))
    _write_samples(peak, rss_growth_per_s=0.2)  # memory follows a peak's load: not judged
    summary = write_summary(peak)
    assert summary["health"]["leaks"] == []
    assert "leak" not in summary["targets"]["relay"]["server"]["relay"]


def test_a_run_without_server_samples_has_no_server_block(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_run(run, SyntheticRun())
    summary = write_summary(run)
    assert all("server" not in t for t in summary["targets"].values())
    assert summary["health"]["leaks"] == []


def _scrape_only(run: Path, sources: list[dict]) -> None:
    """A vllm --scrape server with no PID: its process_* metrics each second of every window."""
    meta = json.loads((run / "run.json").read_text())
    rows = []
    for target in meta["targets"].values():
        for t in range(target["started_ns"] - S, target["ended_ns"] + S, S):
            rows.append(
                {
                    "time_ns": t,
                    "mono_ns": t,
                    "interval_s": 1.0,
                    "rates": {"process_cpu_seconds_total": 0.5},
                    "gauges": {"process_resident_memory_bytes": 96 * 2**20},
                }
            )
    server = run / "server"
    server.mkdir()
    (server / "vllm.metrics.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    (server / "sources.json").write_text(json.dumps({"interval_s": 1.0, "sources": sources}))


def test_a_scrape_only_servers_memory_is_charted_and_a_silent_source_is_noted(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    write_run(run, SyntheticRun(scenario="steady", steps=((10, 60.0),)))
    # as sources.json is written at the start: a killed run never rewrote vllm's counts
    answered = {"name": "vllm.metrics", "address": "http://127.0.0.1:9/metrics", "samples": 0,
                "gaps": 0, "first_error": None, "ended": None}  # fmt: skip
    silent = {"name": "slow.metrics", "address": "http://127.0.0.1:8/metrics", "samples": 0,
              "gaps": 0, "first_error": None, "ended": None}  # fmt: skip
    _scrape_only(run, [answered, silent])
    summary = write_summary(run)
    assert summary["targets"]["relay"]["server"]["vllm"]["peak_rss_mb"] == 96.0
    series = per_second(load_folder(run))
    assert series["rss_mb:vllm"].dropna().iloc[0] == 96.0  # charted as in the summary
    assert series["cpu_pct:vllm"].dropna().iloc[0] == 50.0
    notes = [n for n in summary["notes"] if "server samples" in n]
    # no poll of slow.metrics finished: it never answered; vllm.metrics' file has samples
    assert len(notes) == 1 and "slow.metrics" in notes[0] and "never answered" in notes[0]
    assert "0 samples, 0 gaps" in notes[0]
