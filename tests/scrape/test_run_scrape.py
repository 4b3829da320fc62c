"""``relaybench run`` with the server view: its own servers scraped, ``--scrape`` sources that
fail (warned once, the run completes, the report notes them), and bad flags."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from relaybench.errors import UsageError
from relaybench.run.cli import parse

RELAYBENCH = [sys.executable, "-m", "relaybench"]


def _lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--scrape", "ftp://127.0.0.1/metrics", "http(s)"),
        ("--scrape", "relay=", "http(s)"),
        ("--scrape", "127.0.0.1:9100/metrics", "http(s)"),
        ("--scrape-pid", "abc", "positive PID"),
        ("--scrape-pid", "relay=0", "positive PID"),
        ("--scrape-interval", "0", "--scrape-interval"),
        ("--scrape-interval", "0.01", "at least 0.1 s"),
        ("--scrape-pid", "\u0661\u0662", "positive PID"),  # Arabic-Indic 12: not an ASCII PID
        ("--scrape-redis", "http://127.0.0.1:6379", "redis://"),
        ("--scrape-redis", "redis://", "--scrape-redis"),  # no host
        ("--scrape-redis", "cache=rediss://:pw@/0", "--scrape-redis"),
        ("--scrape-redis", "unix://", "--scrape-redis"),  # no socket path
    ],
)
def test_bad_scrape_flags_are_usage_errors(tmp_path: Path, flag: str, value: str, says: str):
    with pytest.raises(UsageError, match=r".") as caught:
        parse([flag, value, "--out", str(tmp_path / "run")])
    assert caught.value.exit_code == 2 and says in caught.value.message


def test_a_bad_scrape_url_never_echoes_its_credentials(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        parse(["--scrape", "ftp://admin:hunter2@host/metrics", "--out", str(tmp_path / "r")])
    assert "hunter2" not in caught.value.message


def test_scrape_specs_with_and_without_names(tmp_path: Path) -> None:
    plan = parse(
        ["--scrape", "vllm=http://10.0.0.5:8000/metrics", "--scrape", "http://h:9100/m?a=b",
         "--scrape-pid", "42", "--scrape-pid", "db=7", "--scrape-interval", "0.5",
         "--out", str(tmp_path / "run")]
    )  # fmt: skip
    assert plan.scrape_urls == [
        ("vllm", "http://10.0.0.5:8000/metrics"),
        ("h-9100", "http://h:9100/m?a=b"),
    ]
    assert plan.scrape_pids == [("pid-42", 42), ("db", 7)]
    assert plan.scrape_interval_s == 0.5 and plan.scrape_servers
    redis = ["--scrape-redis", "redis://127.0.0.1:6379/0"]
    redis += ["--scrape-redis", "limits=redis://:pw@10.0.0.9:6380/1"]
    plan = parse([*redis, "--out", str(tmp_path / "run2")])
    assert plan.scrape_redis == [
        ("127.0.0.1-6379", "redis://127.0.0.1:6379/0"), ("limits", "redis://:pw@10.0.0.9:6380/1")
    ]  # fmt: skip


def test_failing_scrape_sources_warn_once_and_the_run_completes(start_server, tmp_path: Path):
    mock = start_server("mock_upstream", "--ttft-ms", "20", "--itl-ms", "2")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens here once the socket is closed
    out = tmp_path / "run"
    done = subprocess.run(
        [*RELAYBENCH, "run", "--target", f"direct={mock.url}", "--users", "2", "--duration", "3",
         "--max-tokens", "5", "--scrape", f"gone=http://127.0.0.1:{closed}/metrics",
         "--scrape", f"json={mock.url}/mock/stats", "--scrape-pid", f"mock={mock.pid}",
         "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("scrape gone.metrics") == 1 and "unreachable" in done.stderr
    assert done.stderr.count("scrape json.metrics") == 1 and "not Prometheus" in done.stderr
    summary = json.loads((out / "summary.json").read_text())
    notes = " ".join(summary["notes"])
    assert "gone.metrics" in notes and "json.metrics" in notes
    block = summary["targets"]["direct"]["server"]["mock"]
    assert block["samples"] >= 2 and block["cpu_s"] is not None and block["peak_rss_mb"] > 0
    assert "gone.metrics" in (out / "report.md").read_text()
    assert all("gap" in r for r in _lines(out / "server" / "gone.metrics.jsonl"))


def test_the_servers_run_starts_are_scraped(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = subprocess.run(
        [*RELAYBENCH, "run", "--users", "2", "--duration", "3", "--max-tokens", "5",
         "--ttft-ms", "20", "--itl-ms", "2", "--scrape-interval", "0.5", "--out", str(out)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "warning: scrape" not in done.stderr
    files = sorted(p.name for p in (out / "server").glob("*.jsonl"))
    assert files == [
        "mock.process.jsonl", "mock.stats.jsonl", "relay.metrics.jsonl", "relay.process.jsonl"
    ]  # fmt: skip
    metrics = [r for r in _lines(out / "server" / "relay.metrics.jsonl") if "gap" not in r]
    assert metrics and all("relay_active_streams" in r["gauges"] for r in metrics)
    # while the relay target ran, the relay relayed streams and its upstream answered
    assert max(r["gauges"]["relay_active_streams"] for r in metrics) >= 1
    summary = json.loads((out / "summary.json").read_text())
    relay = summary["targets"]["relay"]["server"]
    assert set(relay) == {"relay", "mock"}
    assert relay["relay"]["cpu_s_per_request"] is not None
    assert relay["relay"]["fds_start"] is not None and relay["relay"]["fds_end"] is not None
    meta = json.loads((out / "run.json").read_text())
    assert meta["scrape"]["interval_s"] == 0.5
