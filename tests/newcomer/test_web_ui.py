"""Locust's web UI counts each request once, and its STOP is recorded as an interruption."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.newcomer.conftest import RELAYBENCH, load, records


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stats(port: int) -> dict[str, dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats/requests", timeout=2) as resp:
        return {row["name"]: row for row in json.loads(resp.read())["stats"]}


def test_web_ui_totals_count_each_request_once_and_stop_interrupts(mock, tmp_path: Path) -> None:
    port = _free_port()
    out = tmp_path / "run"
    args = ["--target", f"direct={mock.url}", "--users", "2", "--duration", "60"]
    args += ["--max-tokens", "5", "--web", "--web-port", str(port), "--out", str(out)]
    proc = subprocess.Popen(
        [*RELAYBENCH, "run", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        rows: dict[str, dict] = {}
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                rows = _stats(port)
            except OSError:
                rows = {}
            if rows.get("E2E direct", {}).get("num_requests", 0) >= 10:
                break
            time.sleep(0.3)
        e2e, ttft, total = rows["E2E direct"], rows["TTFT direct"], rows["Aggregated"]
        assert ttft["num_requests"] > 0  # TTFT stays visible as its own row ...
        assert total["num_requests"] == e2e["num_requests"]  # ... but is no request of its own
        req = urllib.request.Request(f"http://127.0.0.1:{port}/stop", method="POST")
        urllib.request.urlopen(req, timeout=5).close()
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stdout + stderr
    assert "stopped from the web UI" in stdout
    meta = load(out / "run.json")
    assert meta["interrupted"] is True
    recs = records(out)
    with (out / "locust" / "direct_stats.csv").open(newline="") as f:
        counts = {r["Name"]: int(r["Request Count"]) for r in csv.DictReader(f)}
    assert counts["Aggregated"] == counts["E2E direct"] == len(recs)
    direct = load(out / "summary.json")["targets"]["direct"]  # cut by the STOP: counted apart
    assert direct["requests"] + direct["interrupted"] == len(recs)


def test_two_processes_aggregate_each_request_once(mock, tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = subprocess.run(
        [*RELAYBENCH, "run", "--target", f"direct={mock.url}", "--users", "2", "--duration",
         "2", "--max-tokens", "5", "--processes", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    recs = records(out)
    with (out / "locust" / "direct_stats.csv").open(newline="") as f:
        counts = {r["Name"]: int(r["Request Count"]) for r in csv.DictReader(f)}
    assert counts["Aggregated"] == counts["E2E direct"] == counts["TTFT direct"] == len(recs)
    final = [line for line in done.stdout.splitlines() if line.startswith("  [direct] end")]
    assert final and f"done {len(recs)} " in final[0]  # the last progress line = the table
