"""``relaybench run`` end to end, as a subprocess, against real servers on 127.0.0.1."""

from __future__ import annotations

import csv
import itertools
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.harness import RELAYBENCH, mock_stats, records, run


def fast_mock(start_server):
    return start_server(
        "mock_upstream", "--ttft-ms", "50", "--itl-ms", "5", "--output-from-max-tokens"
    )


def locust_csv_counts(run_dir: Path, target: str) -> dict[str, int]:
    """Request counts per row of Locust's own final stats CSV (the aggregate row left out)."""
    with (run_dir / "locust" / f"{target}_stats.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return {r["Name"]: int(r["Request Count"]) for r in rows if r["Name"] != "Aggregated"}


def test_external_target_counts_add_up(start_server, tmp_path: Path) -> None:
    mock = fast_mock(start_server)
    out = tmp_path / "run"
    calibration = tmp_path / "calibration.json"
    calibration.write_text(json.dumps({"capacity": {"streams_per_process": 500}}))
    done = run(
        *("--target", f"direct={mock.url}", "--users", "3", "--duration", "2"),
        *("--max-tokens", "10", "--calibration", str(calibration), "--out", str(out)),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(out)  # the last line is the folder
    assert "[direct]" in done.stdout  # live progress
    recs = records(out, "direct")
    served = mock_stats(mock.url)
    summary = json.loads((out / "summary.json").read_text())
    meta = json.loads((out / "run.json").read_text())
    assert len(recs) > 10
    assert summary["targets"]["direct"]["requests"] == len(recs) == served["requests"]
    assert served["completed"] == len(recs) and served["cancelled"] == 0
    assert meta["targets"]["direct"]["locust"]["locust_requests"] == len(recs)
    assert meta["interrupted"] is False and meta["ended_at"]
    assert meta["calibration"]["capacity"]["streams_per_process"] == 500  # kept for the report
    assert meta["calibration"]["file"] == str(calibration)
    assert all(r["ok"] and r["max_tokens"] == 10 == r["output_tokens"] for r in recs)
    assert list((out / "loadgen").glob("direct.w*.jsonl"))  # CPU samples for health


def test_two_processes_merge_exactly(start_server, tmp_path: Path) -> None:
    mock = fast_mock(start_server)
    out = tmp_path / "run"
    done = run(
        "--target",
        f"direct={mock.url}",
        "--users",
        "4",
        "--duration",
        "3",
        "--processes",
        "2",
        "--max-tokens",
        "10",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    files = sorted((out / "records").glob("direct.*.jsonl"))
    assert len(files) == 2  # one file per worker process
    recs = records(out, "direct")
    assert {r["worker"] for r in recs} == {f.name.split(".")[1] for f in files}
    meta = json.loads((out / "run.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    locust = meta["targets"]["direct"]["locust"]
    assert locust["processes"] == 2
    # the merged summary, Locust's own total and the mock's count: the same, to the last request
    assert summary["targets"]["direct"]["requests"] == len(recs) == locust["locust_requests"]
    assert len(recs) == mock_stats(mock.url)["requests"]
    assert locust_csv_counts(out, "direct") == {"TTFT direct": len(recs), "E2E direct": len(recs)}
    # ... and equals the summary of the same records pooled into one file
    from reports.summary import build_summary

    pooled = tmp_path / "pooled"
    (pooled / "records").mkdir(parents=True)
    (pooled / "run.json").write_bytes((out / "run.json").read_bytes())
    with (pooled / "records" / "direct.wall.jsonl").open("wb") as merged:
        for f in files:
            merged.write(f.read_bytes())
    assert build_summary(pooled)["targets"] == build_summary(out)["targets"]


def test_open_loop_measures_from_the_intended_start(start_server, tmp_path: Path) -> None:
    # one user, arrivals every 100 ms, service ~200 ms: the user falls further behind each time
    mock = start_server(
        "mock_upstream", "--ttft-ms", "200", "--itl-ms", "1", "--output-tokens", "1"
    )
    out = tmp_path / "run"
    done = run(
        "--target",
        f"direct={mock.url}",
        "--scenario",
        "constant",
        "--rate",
        "10",
        "--users",
        "1",
        "--duration",
        "1.5",
        "--max-tokens",
        "none",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    recs = sorted(records(out, "direct"), key=lambda r: r["seq"])
    assert len(recs) >= 4
    intended = [r["intended_ns"] for r in recs]
    # intended starts are the absolute schedule t0 + i / rate, whatever happened at run time
    assert all(b - a == 100_000_000 for a, b in itertools.pairwise(intended))
    lag = [(r["start_ns"] - r["intended_ns"]) / 1e6 for r in recs]
    for i, r in enumerate(recs):
        assert r["rate"] == 10.0
        # service time known (~200 ms): the backlog grows ~100 ms per request
        assert lag[i] >= i * (200 - 100) - 30, lag
        response_ttft = r["ttft_ms"] + lag[i]  # what the user waited, from the intended start
        assert response_ttft >= 200 + i * 100 - 30
    meta = json.loads((out / "run.json").read_text())
    assert meta["scenario_params"]["open_loop"] is True and meta["scenario_params"]["rate"] == 10
    # one user cannot deliver 10 req/s of 200 ms requests: the run says so itself
    health = json.loads((out / "summary.json").read_text())["health"]
    assert health["degraded"] is True
    assert any("schedule lag" in r for r in health["reasons"]), health


def test_open_loop_delivers_the_schedule_exactly(start_server, tmp_path: Path) -> None:
    mock = start_server("mock_upstream", "--ttft-ms", "20", "--itl-ms", "1", "--output-tokens", "2")
    out = tmp_path / "run"
    done = run(
        *("--target", f"direct={mock.url}", "--scenario", "constant", "--rate", "4"),
        *("--users", "4", "--duration", "3", "--max-tokens", "none", "--out", str(out)),
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    direct = summary["targets"]["direct"]
    # arrivals at exactly t0 + i / 4 s for i = 0..11, inside a window of exactly 3 s (a paused
    # load generator sends the last one late, not never: its wake-up timer expires before the
    # window's, and in-flight requests get >= 10 s to finish at the end)
    t0 = json.loads((out / "run.json").read_text())["targets"]["direct"]["started_ns"]
    recs = records(out, "direct")
    assert sorted(r["intended_ns"] for r in recs) == [t0 + i * 250_000_000 for i in range(12)]
    assert direct["requests"] == 12 == len(recs)
    assert direct["requests_per_s"] == 4.0
    assert not any("achieved" in r for r in summary["health"]["reasons"]), summary["health"]


def test_bad_usage_exits_2_listing_the_choices(tmp_path: Path) -> None:
    done = run("--scenario", "weekend", "--out", str(tmp_path / "a"))
    assert done.returncode == 2
    assert "unknown scenario 'weekend'" in done.stderr and "peak" in done.stderr
    done = run("--target", "a=http://127.0.0.1:9", "--buffered", "b", "--out", str(tmp_path / "b"))
    assert done.returncode == 2 and "choose from a" in done.stderr
    done = run("--target", "nourl", "--out", str(tmp_path / "c"))
    assert done.returncode == 2 and "NAME=URL" in done.stderr
    done = run("--target", "x=ftp://h", "--out", str(tmp_path / "d"))
    assert done.returncode == 2 and "not an http(s) URL" in done.stderr
    done = run("--calibration", str(tmp_path / "missing.json"), "--out", str(tmp_path / "e"))
    assert done.returncode == 2 and "--calibration" in done.stderr
    done = run("--users", "0", "--out", str(tmp_path / "f"))
    assert done.returncode == 2 and "--users: must be at least 1" in done.stderr
    assert not any(tmp_path.iterdir())  # nothing written


def test_unreachable_target_exits_2_before_any_load(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    done = run("--target", f"gone=http://127.0.0.1:{port}", "--out", str(out))
    assert done.returncode == 2
    assert f"target gone at http://127.0.0.1:{port} is unreachable" in done.stderr
    # before any load: no target was started (its "== gone:" header) and no folder written
    assert "== gone" not in done.stdout and not out.exists()


def test_interrupted_run_keeps_its_records_and_rebuilds(start_server, tmp_path: Path) -> None:
    mock = fast_mock(start_server)
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [
            *RELAYBENCH,
            "run",
            "--target",
            f"direct={mock.url}",
            "--users",
            "3",
            "--duration",
            "60",
            "--max-tokens",
            "10",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            files = list((out / "records").glob("*.jsonl")) if out.exists() else []
            if files and sum(len(f.read_bytes().splitlines()) for f in files) >= 10:
                break
            time.sleep(0.1)
        else:
            pytest.fail("no records were flushed while the run went")
        os.kill(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr  # interrupted (relaybench.run.exitcodes)
    assert "interrupted" in stdout and stdout.strip().splitlines()[-1] == str(out)
    meta = json.loads((out / "run.json").read_text())
    assert meta["interrupted"] is True and meta["ended_at"]
    recs = records(out, "direct")
    assert len(recs) >= 10
    summary = json.loads((out / "summary.json").read_text())
    direct = summary["targets"]["direct"]  # the ones cut by the stop are counted apart
    assert direct["requests"] + direct["interrupted"] == len(recs)
    # the folder alone rebuilds the summary
    (out / "summary.json").unlink()
    rebuilt = subprocess.run(
        [*RELAYBENCH, "report", str(out)], capture_output=True, text=True, timeout=60
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    again = json.loads((out / "summary.json").read_text())
    assert again["targets"]["direct"] == direct


def test_default_targets_start_their_own_servers(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = run(
        *("--users", "3", "--duration", "2", "--ttft-ms", "50", "--itl-ms", "5"),
        *("--max-tokens", "10", "--out", str(out)),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(out)
    summary = json.loads((out / "summary.json").read_text())
    meta = json.loads((out / "run.json").read_text())
    assert list(summary["targets"]) == ["direct", "relay", "relay-buffered"]
    for name, entry in summary["targets"].items():
        served = json.loads((out / "mock_stats" / f"{name}.json").read_text())
        assert entry["requests"] == served["requests"] == len(records(out, name)) > 0, name
        assert entry["ok"] == entry["requests"], (name, entry["errors"])
        assert entry["first_token_lag_ms"] is not None  # our mock stamps every chunk
        counts = locust_csv_counts(out, name)
        assert counts == {f"TTFT {name}": entry["ok"], f"E2E {name}": entry["requests"]}, name
    assert meta["targets"]["relay-buffered"]["stream"] is False
    assert summary["health"]["degraded"] is False, summary["health"]
    # lost records no longer add up to what the mock served: the health check notices (it
    # forgives up to the in-flight count at the stop, 3 users here, so drop 5)
    from reports.summary import build_summary

    path = next((out / "records").glob("direct.*.jsonl"))
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) > 5
    path.write_bytes(b"".join(lines[:-5]))
    health = build_summary(out)["health"]
    assert health["degraded"] and any("direct" in r for r in health["reasons"]), health
    assert meta["mock"]["ttft_ms"] == 50
    # the servers it started are gone: their ports refuse connections
    for entry in meta["targets"].values():
        host, port = entry["url"].removeprefix("http://").split(":")
        with pytest.raises(OSError), socket.create_connection((host, int(port)), timeout=2):
            pass


def test_two_processes_split_one_open_loop_schedule(start_server, tmp_path: Path) -> None:
    mock = start_server("mock_upstream", "--ttft-ms", "20", "--itl-ms", "1", "--output-tokens", "2")
    out = tmp_path / "run"
    done = run(
        *("--target", f"direct={mock.url}", "--processes", "2", "--scenario", "constant"),
        *("--rate", "6", "--users", "4", "--duration", "2", "--max-tokens", "none"),
        *("--out", str(out)),
    )
    assert done.returncode == 0, done.stderr
    recs = records(out, "direct")
    assert len({r["worker"] for r in recs}) == 2
    intended = sorted(r["intended_ns"] for r in recs)
    # the two processes sent one schedule between them: 12 arrivals, 1/6 s apart, none twice
    assert len(intended) == 12
    assert {b - a for a, b in itertools.pairwise(intended)} <= {166_666_666, 166_666_667}
    assert json.loads((out / "summary.json").read_text())["targets"]["direct"]["requests"] == 12


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_web_flag_serves_locust_ui_with_the_ttft_rows_while_running(
    start_server, tmp_path: Path
) -> None:
    mock = fast_mock(start_server)
    port = _free_port()
    args = ["--target", f"direct={mock.url}", "--users", "2", "--duration", "6"]
    args += ["--max-tokens", "5", "--web", "--web-port", str(port), "--out", str(tmp_path / "run")]
    proc = subprocess.Popen(
        [*RELAYBENCH, "run", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        names: set[str] = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None and "TTFT direct" not in names:
            try:
                url = f"http://127.0.0.1:{port}/stats/requests"
                with urllib.request.urlopen(url, timeout=2) as resp:
                    names = {row["name"] for row in json.loads(resp.read())["stats"]}
            except OSError:
                pass
            time.sleep(0.3)
        assert {"TTFT direct", "E2E direct"} <= names
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
