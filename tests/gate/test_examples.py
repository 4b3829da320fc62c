"""The shipped examples stay valid: thresholds parse, the workflow gates with them."""

from __future__ import annotations

from pathlib import Path

import pytest

from reports.thresholds import load_thresholds

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_commented_thresholds_cover_every_check_kind():
    th = load_thresholds(EXAMPLES / "thresholds.toml")
    kinds = {
        ("derived" if c.derived else "relative" if c.relative else "absolute") for c in th.checks
    }
    assert kinds == {"absolute", "relative", "derived"}
    assert th.derived.slo_ttft_ms == 1000


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
    assert "examples/thresholds.toml" in runs
