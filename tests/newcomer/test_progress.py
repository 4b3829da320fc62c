"""What ``relaybench run`` prints: set-up steps, ``target i/N`` with an ETA, live lines that show
``-`` before the first answer, a final line equal to the records, and the report being built."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from relaybench.run import progress
from tests.newcomer.conftest import load, run


def test_an_embedded_run_says_what_it_does(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = run("--users", "2", "--duration", "2", "--ttft-ms", "50", "--itl-ms", "5",
               "--max-tokens", "5", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    steps = ["starting the mock upstream ...", "  mock ready: http://127.0.0.1:",
             "starting the relay ...", "  relay ready: http://127.0.0.1:"]  # fmt: skip
    at = [next(i for i, line in enumerate(lines) if line.startswith(s)) for s in steps]
    assert at == sorted(at)  # in that order
    headers = [line for line in lines if line.startswith("== ")]
    assert [re.search(r"target (\d)/3", h).group(1) for h in headers] == ["1", "2", "3"]
    assert all(re.search(r"left in the run \(ends ~\d\d:\d\d:\d\d\)", h) for h in headers)
    summary = load(out / "summary.json")
    for name, t in summary["targets"].items():
        final = [line for line in lines if line.startswith(f"  [{name}] end ")]
        assert len(final) == 1 and f"done {t['requests']}  errors 0" in final[0], name
    assert "building the report: summary.json, charts, report.md, report.html ..." in lines
    assert f"report: {out / 'report.html'}" in lines
    assert lines[-1] == str(out)


def test_progress_formatting() -> None:
    line = progress.line("relay", elapsed_s=4, total_s=30, users=5, rps=0.0, ttft_p50=None,
                         ttft_p95=None, done=0, errors=0)  # fmt: skip
    assert "TTFT p50 - p95 - ms" in line and "4/30 s" in line
    line = progress.line("relay", elapsed_s=30, total_s=30, users=5, rps=1.0, ttft_p50=500,
                         ttft_p95=900, done=9, errors=3,
                         causes=[("HTTP 502: upstream", 2), ("timeout", 1)])  # fmt: skip
    assert "finishing" in line and line.endswith("errors 3 — 2× HTTP 502: upstream; 1× timeout")
    now = dt.datetime(2026, 1, 1, 10, 0, 0)
    assert progress.target_header(2, 3, 75, now) == (
        "target 2/3, about 1 min 15 s left in the run (ends ~10:01:15)"
    )
    # a remote worker's error arrives as the exception's repr
    assert progress.error_text("CatchResponseError('HTTP 401: no key')") == "HTTP 401: no key"
