"""The shipped examples stay valid: thresholds parse, the workflow gates with them."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaybench.cli import main as relaybench
from reports.thresholds import load_thresholds

from .runs import make_run

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_commented_thresholds_need_no_baseline_and_gate_a_healthy_run(tmp_path, capsys):
    th = load_thresholds(EXAMPLES / "thresholds.toml")
    kinds = {
        ("derived" if c.derived else "relative" if c.relative else "absolute") for c in th.checks
    }
    assert kinds == {"absolute", "derived"} and not th.needs_baseline
    assert th.derived.slo_ttft_ms == 1000
    # 40-token answers: buffered waits ~1 s for what streaming shows after 0.2 s
    run = make_run(tmp_path / "run", tokens=40)
    code = relaybench(["gate", str(run), "--thresholds", str(EXAMPLES / "thresholds.toml")])
    out = capsys.readouterr().out
    assert code == 0, out
    passed = [line for line in out.splitlines() if line.startswith("PASS ")]
    assert len(passed) == len(th.checks) + 1  # every check and the health line


def test_relative_thresholds_gate_against_a_baseline_of_the_same_shape(tmp_path, capsys):
    th = load_thresholds(EXAMPLES / "thresholds-relative.toml")
    assert th.needs_baseline and any(not c.relative for c in th.checks)
    toml = str(EXAMPLES / "thresholds-relative.toml")
    base, same = make_run(tmp_path / "base", seed=1), make_run(tmp_path / "same", seed=2)
    assert relaybench(["gate", str(same), "--thresholds", toml, "--baseline", str(base)]) == 0
    assert "FAIL" not in capsys.readouterr().out
    assert relaybench(["gate", str(same), "--thresholds", toml]) == 2
    assert "relative limits need --baseline" in capsys.readouterr().err


def test_ci_thresholds_need_no_baseline():
    th = load_thresholds(EXAMPLES / "ci-thresholds.toml")
    assert not th.needs_baseline  # .ci/run has no baseline to compare with
    assert {c.metric for c in th.checks if c.derived} >= {
        "relay_added_ttft_ms.p50",
        "streaming_ttft_reduction_pct.p50",
        "goodput_pct",
    }


def test_workflow_runs_bench_gate_and_uploads():
    yaml = pytest.importorskip("yaml")
    flow = yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())
    steps = flow["jobs"]["perf-gate"]["steps"]
    uses = [s.get("uses", "") for s in steps]
    assert any(u.startswith("actions/checkout@") for u in uses)
    assert any(u.startswith("actions/setup-python@") for u in uses)
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["if"] == "always()"
    runs = " ".join(s.get("run", "") for s in steps)
    assert "relaybench run" in runs and "--duration" in runs
    assert "relaybench gate" in runs and "--baseline" in runs and "--junit" in runs
    assert "examples/thresholds.toml" in runs and "examples/thresholds-relative.toml" in runs
