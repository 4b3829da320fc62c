"""``relaybench run`` exit codes: 0 healthy, 1 SLO failed / all failed / stopped early,
2 unreachable, 130 interrupted (``relaybench.run.exitcodes``)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from loadtests import pacing
from relaybench.run.exitcodes import run_exit_code
from tests.newcomer.conftest import load, records, run

FAST = ("--max-tokens", "5")


def test_a_healthy_run_exits_0(mock, tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = run("--target", f"direct={mock.url}", "--users", "2", "--duration", "2", *FAST,
               "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "exit " not in done.stdout
    assert done.stdout.strip().splitlines()[-1] == str(out)


def test_a_missed_slo_exits_1_and_says_which(mock, tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = run("--target", f"direct={mock.url}", "--users", "2", "--duration", "2", *FAST,
               "--slo-ttft-p95-ms", "1", "--out", str(out))  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "exit 1: direct: SLO verdict FAIL: TTFT p95" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == str(out)  # the folder is still the last line


def test_first_requests_failing_alike_stop_the_target_early(mock, tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = run("--target", f"direct={mock.url}", "--users", "10", "--duration", "60", *FAST,
               "--header", "X-Mock-Fault:status:404", "--out", str(out))  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    line = "[direct] stopped early: its first 20 requests all failed: HTTP 404: mock fault"
    assert line in done.stdout
    meta = load(out / "run.json")
    early = meta["targets"]["direct"]["stopped_early"]
    assert early["requests"] == 20 and early["error"] == "http_4xx"
    assert early["cause"].startswith("HTTP 404: ")
    assert meta["interrupted"] is False  # stopped by us, not by the user
    # far from the 60 s asked: each user pauses at most 1.5 s after an error (loadtests.pacing),
    # so the full duration would have recorded at least 10 users x 60 s / 1.5 s = 400 requests
    fewest_full = 10 * 60 / (pacing.ERROR_PAUSE_S * (1 + pacing.JITTER))
    assert 20 <= len(records(out)) < fewest_full / 2


def test_exit_code_rules() -> None:
    meta = {"planned_targets": ["a"], "targets": {"a": {}}, "slo": {"ttft_ms_p95": 100.0}}
    ok = {"requests": 5, "ok": 5, "error_rate": 0.0, "ttft_ms": {"p95": 50.0}}
    assert run_exit_code({"targets": {"a": ok}}, meta, interrupted=False) == (0, [])
    assert run_exit_code({"targets": {"a": ok}}, meta, interrupted=True)[0] == 130
    slow = {**ok, "ttft_ms": {"p95": 500.0}}
    assert run_exit_code({"targets": {"a": slow}}, meta, interrupted=False)[0] == 1
    failed = {"requests": 5, "ok": 0, "error_rate": 1.0, "ttft_ms": {"p95": None},
              "error_causes": [{"cause": "HTTP 401: no key", "count": 5}]}  # fmt: skip
    code, why = run_exit_code({"targets": {"a": failed}}, meta, interrupted=False)
    assert code == 1 and why == ["a: every request failed (5× HTTP 401: no key)"]
    assert run_exit_code({"targets": {}}, meta, interrupted=False)[0] == 1  # nothing measured
    refused = {"cause": "ConnectionRefusedError: [Errno 111]", "error": "connect", "requests": 20}
    meta_refused = {**meta, "targets": {"a": {"stopped_early": refused}}}
    code, why = run_exit_code({"targets": {"a": failed}}, meta_refused, interrupted=False)
    assert code == 2 and "stopped early" in why[0]


def test_a_target_that_stops_accepting_connections_exits_2(tmp_path: Path) -> None:
    # reachable for the check before the load, refusing every connection after it
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def accept_once_then_close() -> None:
        conn, _ = listener.accept()
        conn.close()
        listener.close()

    thread = threading.Thread(target=accept_once_then_close, daemon=True)
    thread.start()
    out = tmp_path / "run"
    try:
        done = run("--target", f"gone=http://127.0.0.1:{port}", "--users", "10", "--duration",
                   "60", "--out", str(out))  # fmt: skip
    finally:
        thread.join(5)
        listener.close()
    assert done.returncode == 2, done.stdout + done.stderr
    early = load(out / "run.json")["targets"]["gone"]["stopped_early"]
    assert early["error"] == "connect" and "refused" in early["cause"].lower()
    assert "[gone] stopped early: its first 20 requests all failed: " in done.stdout


def test_a_baseline_targets_missed_slo_is_reported_not_gated() -> None:
    slo = {"ttft_ms_p95": 100.0}
    ok = {"requests": 5, "ok": 5, "error_rate": 0.0, "ttft_ms": {"p95": 50.0}}
    slow = {**ok, "ttft_ms": {"p95": 5000.0}}
    summary = {"targets": {"relay": ok, "relay-buffered": slow}}
    meta = {
        "planned_targets": ["relay", "relay-buffered"],
        "targets": {"relay": {}, "relay-buffered": {"baseline": True}},
        "slo": slo,
    }
    assert run_exit_code(summary, meta, interrupted=False) == (0, [])
    meta["targets"]["relay-buffered"] = {}  # the same target, not a baseline: it gates
    assert run_exit_code(summary, meta, interrupted=False)[0] == 1
