"""``make bench-report``'s build child is owned: it ends with the bench (``relaybench.procs``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from relaybench.procs import PARENT_PID_ENV
from reports import bench


def test_the_build_child_is_owned_and_the_figures_are_printed(monkeypatch, capsys) -> None:
    calls: list[dict] = []
    real_run = subprocess.run

    def spy(argv, **kwargs):
        calls.append(kwargs)
        return real_run(argv, **kwargs)

    monkeypatch.setattr(bench.subprocess, "run", spy)
    assert bench.main(["--records", "300"]) == 0
    (kwargs,) = calls
    assert kwargs["start_new_session"] is True
    assert kwargs["env"][PARENT_PID_ENV] == str(os.getpid())
    out = capsys.readouterr().out
    assert "report build: " in out and "peak memory (child max RSS): " in out
    assert "report.html" in out.split("wrote: ", 1)[1]


def test_a_build_child_whose_bench_is_gone_exits_before_building(tmp_path: Path) -> None:
    env = {**os.environ, PARENT_PID_ENV: "1"}  # as if the bench died and we were adopted
    done = subprocess.run(
        [sys.executable, "-m", "reports.bench", "--build", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1 and "parent process 1 is gone" in done.stderr
    assert not (tmp_path / "summary.json").exists()
