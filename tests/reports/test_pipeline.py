import json
import shutil

import pytest
from PIL import Image

from reports.pipeline import CHART_FILES, rebuild
from reports.synthetic import SyntheticRun, SyntheticTarget, write_run


@pytest.fixture(scope="module")
def built(step_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("built") / "run"
    shutil.copytree(step_run, run)
    summary = rebuild(run)
    return run, summary


def test_every_chart_is_drawn_for_a_step_run(built):
    run, summary = built
    for name in CHART_FILES.values():
        path = run / name
        assert path.exists(), name
        with Image.open(path) as image:
            width, height = image.size
            colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert width > 400 and height > 250, name
        assert colours is None or len(colours) > 20, f"{name} looks blank"
    assert json.loads((run / "summary.json").read_text()) == summary
    series = (run / "timeseries.csv").read_text().splitlines()
    assert series[0] == "second,target,requests,ok,tokens,ttft_p50,ttft_p95,errors,users"
    assert len(series) > 3 * 27  # ~28 s per target, three targets
    assert (run / "steps.csv").read_text().count("\n") == 1 + 3 * 7


def test_report_md_has_the_tables(built):
    run, summary = built
    text = (run / "report.md").read_text()
    for heading in (
        "## Verdict",
        "## Results",
        "## Relay overhead",
        "## Errors",
        "## Capacity plan",
        "## Charts",
        "## Run",
    ):
        assert heading in text  # fmt: skip
    assert "**Health: OK**" in text
    assert f"{summary['targets']['relay']['ttft_ms']['p95']:,.1f}" in text
    assert "![Latency versus load](latency_vs_load.png)" in text


def test_rebuild_is_reproducible_from_the_records(built, tmp_path):
    run, summary = built
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    for generated in ("summary.json", "report.md", "report.html"):
        (copy / generated).unlink()
    assert rebuild(copy) == summary
    assert (copy / "report.md").read_text() == (run / "report.md").read_text()


def test_single_target_without_stamps_gives_a_partial_report(tmp_path):
    target = SyntheticTarget("external", kind="external", stamps=False)
    write_run(tmp_path, SyntheticRun(steps=((4, 3.0),), targets=(target,)))
    summary = rebuild(tmp_path)
    t = summary["targets"]["external"]
    assert t["first_token_lag_ms"] is None and summary["overhead"] == {}
    assert (tmp_path / "ttft_cdf.png").exists()
    assert not (tmp_path / "perceived_latency.png").exists()  # no buffered target to compare
    assert not (tmp_path / "relay_overhead.png").exists()
    assert "No relay target measured against `direct`." in (tmp_path / "report.md").read_text()


def test_zero_successful_requests_still_report(tmp_path):
    write_run(tmp_path, SyntheticRun(steps=((4, 2.0),), error_rate=1.0))
    summary = rebuild(tmp_path)
    assert all(t["ok"] == 0 for t in summary["targets"].values())
    text = (tmp_path / "report.md").read_text()
    assert "FAIL: no successful request" in text
    assert "http_429" in text
    assert (tmp_path / "report.html").exists()


def test_html_escapes_record_text(tmp_path):
    write_run(tmp_path, SyntheticRun(steps=((2, 2.0),)))
    meta = json.loads((tmp_path / "run.json").read_text())
    meta["command"] = "relaybench run <script>alert(1)</script>"
    (tmp_path / "run.json").write_text(json.dumps(meta))
    rebuild(tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)" in html


def test_a_target_without_records_is_reported_empty_not_dropped(tmp_path):
    write_run(tmp_path, SyntheticRun(steps=((3, 2.0),)))
    meta = json.loads((tmp_path / "run.json").read_text())
    meta["targets"]["ghost"] = {**meta["targets"]["relay"], "kind": "relay"}
    (tmp_path / "run.json").write_text(json.dumps(meta))
    summary = rebuild(tmp_path)
    ghost = summary["targets"]["ghost"]
    assert (ghost["requests"], ghost["ok"], ghost["ttft_ms"]["count"]) == (0, 0, 0)
    assert ghost["requests_per_s"] == 0 and ghost["first_token_lag_ms"] is None
    assert "target ghost is in run.json but has no records" in summary["notes"]
    assert "ghost" in (tmp_path / "report.md").read_text()
