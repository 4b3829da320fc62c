import json

import pytest

from reports.compare import compare, write_comparison
from reports.synthetic import SyntheticRun, write_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("compare")
    same = SyntheticRun(steps=((10, 6.0),))
    write_run(base / "a", SyntheticRun(**{**same.__dict__, "seed": 11}))
    write_run(base / "b", SyntheticRun(**{**same.__dict__, "seed": 12}))
    write_run(base / "slow", SyntheticRun(**{**same.__dict__, "seed": 13, "ttft_ms": 260.0}))
    return base


def test_two_runs_of_one_distribution_show_no_significant_difference(runs, tmp_path):
    result = write_comparison(runs / "a", runs / "b", tmp_path / "out")
    assert result["verdict"].startswith("No significant difference")
    assert len(result["tests"]) == 10  # TTFT p50/p95 x 3 targets + ITL p50/p95 x 2 streaming
    assert all(not t["significant"] for t in result["tests"])
    assert all(t["ci_low"] <= t["value"] <= t["ci_high"] for t in result["tests"])
    text = (tmp_path / "out" / "compare.md").read_text()
    assert "No significant difference" in text and "within noise" in text
    html = (tmp_path / "out" / "compare.html").read_text()
    assert html.count('src="data:image/png;base64,') == 2
    json.loads((tmp_path / "out" / "compare.json").read_text())


def test_a_real_ttft_shift_is_called_significant(runs):
    result = compare(runs / "a", runs / "slow")
    result.pop("_folders")
    shifted = {(t["target"], t["metric"]): t for t in result["tests"]}
    p50 = shifted[("direct", "ttft_ms.p50")]
    assert p50["significant"] and p50["ci_low"] > 20  # the median moved by ~60 ms
    assert 0.15 < p50["relative"] < 0.45
    assert not shifted[("direct", "itl_ms.p50")]["significant"]  # ITL did not change
    assert "significant" in result["verdict"] and "direct ttft_ms.p50" in result["verdict"]


def _t(value, low, high, relative, negligible=False):
    return {"target": "relay", "metric": "itl_ms.p50", "value": value, "ci_low": low,
            "ci_high": high, "relative": relative, "significant": low > 0 or high < 0,
            "negligible": negligible}  # fmt: skip


def test_verdict_separates_noise_negligible_and_material():
    from reports.compare import verdict_text

    noise = _t(0.1, -0.2, 0.4, 0.005)
    tiny = _t(-0.03, -0.06, -0.01, -0.001, negligible=True)
    real = _t(12.0, 8.0, 16.0, 0.06)
    assert verdict_text([noise], 0.99).startswith("No significant difference")
    text = verdict_text([noise, tiny], 0.99)
    assert text.startswith("No material difference") and "negligible" in text and "-0.03" in text
    text = verdict_text([noise, tiny, real], 0.99)
    assert text.startswith("1 of 3 differences are significant: relay itl_ms.p50 +12.00 ms")
    assert "Also statistically real but negligible" in text
    assert verdict_text([], 0.99).startswith("Nothing to test")


def test_a_complete_answer_without_content_has_no_ttft_and_breaks_nothing(runs, tmp_path):
    """An ok record with ``ttft_ms: null`` (``[DONE]`` and no content) must not become NaN."""
    import shutil

    for name in ("a", "b"):
        copy = tmp_path / name
        shutil.copytree(runs / name, copy)
        path = next((copy / "records").glob("direct.*.jsonl"))
        lines = path.read_text().splitlines()
        rec = json.loads(lines[0])
        rec.update(ok=True, error=None, ttft_ms=None, chunks_ms=[], lags_ms=None)
        path.write_text("\n".join([json.dumps(rec), *lines[1:]]) + "\n")
    result = write_comparison(tmp_path / "a", tmp_path / "b", tmp_path / "out")
    assert all(t["value"] == t["value"] for t in result["tests"])  # no NaN anywhere
    json.loads((tmp_path / "out" / "compare.json").read_text(), parse_constant=pytest.fail)
