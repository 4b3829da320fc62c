"""A misconfigured run sends a trickle of errors and says why they failed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from loadtests.pacing import ERROR_PAUSE_S, JITTER, RETRY_AFTER_CAP_S, ErrorPause
from relaybench import records
from relaybench.run.config import LoadConfig, ShapeParams, Target
from reports.causes import error_causes
from tests.newcomer.conftest import load, run
from tests.newcomer.conftest import records as read_records


def test_a_401_target_gets_a_bounded_request_rate_and_the_cause_is_shown(
    mock, tmp_path: Path
) -> None:
    users, seconds = 3, 4.0
    out = tmp_path / "run"
    done = run("--target", f"direct={mock.url}", "--users", str(users), "--duration", "4",
               "--max-tokens", "5", "--header", "X-Mock-Fault:status:401",
               "--out", str(out))  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    recs = read_records(out)
    assert recs and not any(r["ok"] for r in recs)
    # each user pauses >= ERROR_PAUSE_S * (1 - JITTER) after each failure: a bounded rate
    least_pause = ERROR_PAUSE_S * (1 - JITTER)
    assert len(recs) <= users * (seconds / least_pause + 1)
    for r in recs:
        assert least_pause * 1e3 <= r["error_pause_ms"] <= ERROR_PAUSE_S * (1 + JITTER) * 1e3
        assert r["e2e_ms"] < r["error_pause_ms"]  # the pause is not in the latency
    cause = "HTTP 401: mock fault injected: status 401"
    summary = load(out / "summary.json")["targets"]["direct"]
    assert summary["error_causes"] == [
        {"cause": cause, "error": "http_4xx", "status": 401, "count": len(recs)}
    ]
    progress = [line for line in done.stdout.splitlines() if line.startswith("  [direct]")]
    assert progress and all("TTFT p50 - p95 - ms" in line for line in progress)  # never "0"
    final = progress[-1]
    assert f"done {len(recs)}  errors {len(recs)} — {len(recs)}× {cause}" in final
    assert f"direct: {len(recs)}× {cause}" in done.stdout  # under the results table
    assert f"every request failed ({len(recs)}× {cause})" in done.stdout
    report = (out / "report.md").read_text()
    assert f"| direct | {len(recs)} | {cause} |" in report
    html = (out / "report.html").read_text()
    assert "Top causes" in html and cause in html


def _cfg(scenario: str = "steady", rate: float | None = None) -> LoadConfig:
    shape = ShapeParams(scenario=scenario, users=1, duration_s=1.0, rate=rate)
    return LoadConfig(run_dir="x", target=Target("t", "http://127.0.0.1:1"), shape=shape)


def _rec(**fields) -> dict:
    return records.new_record(target="t", worker="w", seq=0, stream=True, start_ns=0, **fields)


def test_the_pause_honours_retry_after_with_a_cap() -> None:
    pause = ErrorPause(_cfg(), 0)
    rec = _rec(error="http_429", status=429)
    assert pause.after(rec, "2") == 2.0 and rec["error_pause_ms"] == 2000.0
    assert pause.after(_rec(error="http_429", status=429), "3600") == RETRY_AFTER_CAP_S
    ok = _rec(ok=True, status=200)
    assert pause.after(ok, None) == 0.0 and ok["error_pause_ms"] is None
    # connect errors have their own back-off (loadtests.client); open loop keeps its schedule
    assert pause.after(_rec(error="connect"), None) == 0.0
    assert ErrorPause(_cfg("constant", rate=5.0), 0).after(_rec(error="http_5xx"), None) == 0.0


@pytest.mark.parametrize(
    ("error", "status", "detail", "cause"),
    [
        ("http_4xx", 401, "HTTP 401: missing credentials\nmore", "HTTP 401: missing credentials"),
        ("connect", None, "ConnectionRefusedError: refused", "ConnectionRefusedError: refused"),
        ("http_5xx", 503, None, "HTTP 503"),
        ("truncated", 200, None, "truncated"),
        (None, None, None, "unknown"),
    ],
)  # fmt: skip
def test_cause_is_one_line(error, status, detail, cause) -> None:
    assert records.cause(error, status, detail) == cause


def test_error_causes_counts_and_orders() -> None:
    rows = pd.DataFrame(
        {
            "ok": [False, False, False, True, False],
            "error": ["http_4xx", "http_4xx", "connect", None, "http_4xx"],
            "status": [401, 401, None, 200, 404],
            "error_detail": ["HTTP 401: a", "HTTP 401: a", "refused", None, "HTTP 404: b"],
        }
    )
    assert error_causes(rows) == [
        {"cause": "HTTP 401: a", "error": "http_4xx", "status": 401, "count": 2},
        {"cause": "HTTP 404: b", "error": "http_4xx", "status": 404, "count": 1},
        {"cause": "refused", "error": "connect", "status": None, "count": 1},
    ]
    assert error_causes(rows[rows["ok"]]) == []
