"""A run's lag against the harness floor from ``relaybench calibrate``."""

import json

from reports.calibration import floor_level
from reports.pipeline import rebuild
from reports.summary import build_summary
from reports.synthetic import SyntheticRun, write_run


def _floor(ftl: tuple[float, float], chunk: tuple[float, float]) -> dict:
    return {
        "first_token_lag_ms": {"p50": ftl[0], "p99": ftl[1]},
        "chunk_lag_ms": {"p50": chunk[0], "p99": chunk[1]},
    }


FLOOR = {"10": _floor((0.2, 1.0), (0.1, 2.0)), "100": _floor((0.4, 3.0), (0.3, 9.0))}


def test_floor_level_is_the_smallest_level_at_or_above_the_users():
    assert floor_level(FLOOR, 5) == (10, True)
    assert floor_level(FLOOR, 10) == (10, True)
    assert floor_level(FLOOR, 11) == (100, True)
    assert floor_level(FLOOR, 500) == (100, False)
    assert floor_level({}, 5) is None


def _with_calibration(run_dir, users):
    write_run(run_dir, SyntheticRun(steps=((5, 3.0),)))
    meta = json.loads((run_dir / "run.json").read_text())
    meta["users"] = users
    meta["calibration"] = {"created_at": "2026-11-24T00:00:00+00:00", "floor": FLOOR}
    (run_dir / "run.json").write_text(json.dumps(meta))


def test_summary_puts_each_stamped_target_beside_the_floor(tmp_path):
    _with_calibration(tmp_path, users=50)
    summary = build_summary(tmp_path)
    block = summary["calibration"]
    assert (block["level"], block["in_range"], block["users"]) == (100, True, 50)
    for name, target in summary["targets"].items():
        if target["first_token_lag_ms"] is None:
            assert name not in block["targets"]
            continue
        row = block["targets"][name]["first_token_lag_ms"]["p99"]
        assert row["floor"] == 3.0
        assert row["excess"] == round(target["first_token_lag_ms"]["p99"] - 3.0, 3)
    assert block["targets"], "the synthetic run has stamped targets"


def test_without_calibration_there_is_no_block(tmp_path):
    write_run(tmp_path, SyntheticRun(steps=((5, 3.0),)))
    assert "calibration" not in build_summary(tmp_path)


def test_reports_show_the_comparison(tmp_path):
    _with_calibration(tmp_path, users=500)
    rebuild(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "## Versus the harness's calibration" in md
    assert "beyond the calibrated range" in md
    assert "harness floor" in (tmp_path / "report.html").read_text()
