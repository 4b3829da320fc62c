"""Ctrl-C during a run: every request the mock saw has a record, the cut ones as interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.hardening.helpers import RELAYBENCH, mock_stats, records


def _wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.parametrize("processes", [1, 2])
def test_records_equal_what_the_mock_saw_after_sigint(
    start_server, tmp_path: Path, processes: int
) -> None:
    # ~1 s per answer: at any moment most users are mid-stream
    mock = start_server("mock_upstream", "--ttft-ms", "100", "--itl-ms", "10")
    users = 6
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [
            *RELAYBENCH, "run", "--target", f"direct={mock.url}", "--users", str(users),
            "--duration", "60", "--max-tokens", "90", "--processes", str(processes),
            "--out", str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        _wait_for(lambda: mock_stats(mock.url)["completed"] >= users, 60, "answers")
        _wait_for(lambda: mock_stats(mock.url)["active_streams"] >= users - 1, 10, "streams")
        time.sleep(0.4)  # past the 100 ms first token of the streams just started, not at 1 s
        os.kill(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "interrupted" in stdout, stdout + stderr
    seen = mock_stats(mock.url)
    recs = records(out, "direct")
    assert len(recs) == seen["requests"], (len(recs), seen)
    cut = [r for r in recs if r["error"] == "interrupted"]
    assert len(cut) >= users - 1
    assert all(not r["ok"] and r["e2e_ms"] is not None for r in cut)
    assert any(r["content_chunks"] > 0 and r["ttft_ms"] is not None for r in cut)  # kept
    summary = json.loads((out / "summary.json").read_text())
    direct = summary["targets"]["direct"]  # the cut ones counted apart, not as failures
    assert direct["interrupted"] == len(cut) and direct["requests"] == len(recs) - len(cut)
    assert "interrupted" not in direct["errors"]
    locust = json.loads((out / "run.json").read_text())["targets"]["direct"]["locust"]
    assert locust["locust_requests"] == len(recs) and locust["interrupted"] is True
