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
    # TTFT p50/p95 x 3 targets + ITL p50/p95 x 2 streaming + error rate and throughput x 3
    assert len(result["tests"]) == 16
    assert not result["regression"] and result["differences"] == []
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
    assert result["verdict"].startswith("REGRESSION: B is worse beyond the tolerance")
    assert "direct ttft_ms.p50 +" in result["verdict"] and result["regression"]


def _t(value, low, high, relative, negligible=False):
    significant = low > 0 or high < 0
    return {"target": "relay", "metric": "itl_ms.p50", "value": value, "ci_low": low,
            "ci_high": high, "relative": relative, "significant": significant,
            "negligible": negligible, "unit": "ms", "worse": "higher",
            "material": significant and not negligible,
            "regression": significant and not negligible and value > 0}  # fmt: skip


def test_verdict_separates_noise_negligible_and_material():
    from reports.compare import verdict_text

    noise = _t(0.1, -0.2, 0.4, 0.005)
    tiny = _t(-0.03, -0.06, -0.01, -0.001, negligible=True)
    real = _t(12.0, 8.0, 16.0, 0.06)
    assert verdict_text([noise], 0.99).startswith("No significant difference")
    text = verdict_text([noise, tiny], 0.99)
    assert text.startswith("No material difference") and "within the tolerance" in text
    assert "-0.03 ms" in text
    text = verdict_text([noise, tiny, real], 0.99)
    assert text.startswith(
        "REGRESSION: B is worse beyond the tolerance in 1 of 3 tests: relay itl_ms.p50 +12.00 ms"
    )
    assert "Also 1 of 3 is statistically real but within the tolerance" in text
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


# -- comparable runs, error rate and throughput, --map, exit codes (issue 12, item 5) ------------


@pytest.fixture(scope="module")
def newcomer_runs(tmp_path_factory):
    from reports.synthetic import SyntheticTarget

    base = tmp_path_factory.mktemp("compare-newcomer")
    one = SyntheticRun(steps=((5, 6.0),), seed=21)
    write_run(base / "steady5", one)
    write_run(base / "steady5b", SyntheticRun(**{**one.__dict__, "seed": 22}))
    write_run(base / "step60", SyntheticRun(**{**one.__dict__, "seed": 23, "scenario": "step",
                                             "steps": ((20, 3.0), (60, 3.0))}))  # fmt: skip
    write_run(base / "broken", SyntheticRun(**{**one.__dict__, "seed": 24, "error_rate": 1.0}))
    renamed = (SyntheticTarget("mock"), SyntheticTarget("gateway", kind="relay", relay_lag_ms=1.5))
    write_run(base / "renamed", SyntheticRun(**{**one.__dict__, "seed": 25, "targets": renamed}))
    return base


def cli(*args: str) -> int:
    from relaybench.cli import main

    return main(["compare", *map(str, args)])


def test_mismatched_runs_say_what_differs_at_the_top_and_on_stdout(newcomer_runs, tmp_path, capsys):
    code = cli(newcomer_runs / "steady5", newcomer_runs / "step60", "--out", tmp_path / "out")
    out = capsys.readouterr().out
    head = out.split("**")[0]  # before the verdict
    assert "⚠ The runs were measured under different load: scenario steady vs step" in head
    assert "users 5 vs 60" in head and "steps [{users: 5, seconds: 6}]" in head
    result = json.loads((tmp_path / "out" / "compare.json").read_text())
    material = {d["what"] for d in result["differences"] if d["material"]}
    assert {"scenario", "users", "steps"} <= material
    assert "different load" in (tmp_path / "out" / "compare.md").read_text().split("**")[0]
    assert "different load" in (tmp_path / "out" / "compare.html").read_text()
    assert code in (0, 1)  # the load differs; whether B regressed is the verdict's business


def test_all_errors_in_b_is_a_regression_not_nothing_to_test(newcomer_runs, tmp_path, capsys):
    code = cli(newcomer_runs / "steady5", newcomer_runs / "broken", "--out", tmp_path / "out")
    out = capsys.readouterr().out
    assert code == 1, out
    result = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert result["verdict"].startswith("REGRESSION")
    by = {(t["target"], t["metric"]): t for t in result["tests"]}
    errors = by[("relay", "error_rate")]
    assert errors["value"] == 1.0 and errors["ci_low"] > 0.5 and errors["regression"]
    tokens = by[("relay", "output_tokens_per_s")]
    assert tokens["relative"] == -1.0 and tokens["ci_high"] < 0 and tokens["regression"]
    assert "relay error_rate +100.0 points" in result["verdict"]
    assert "REGRESSION: B fails more" in out and "REGRESSION: B delivers less" in out


def test_the_same_load_twice_exits_0(newcomer_runs, tmp_path, capsys):
    code = cli(newcomer_runs / "steady5", newcomer_runs / "steady5b", "--out", tmp_path / "out")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "different load" not in out and "Exit status 0" in out


def test_map_pairs_differently_named_targets(newcomer_runs, tmp_path, capsys):
    a, b = newcomer_runs / "steady5", newcomer_runs / "renamed"
    assert cli(a, b, "--out", tmp_path / "none") == 2  # no common name: a usage error
    err = capsys.readouterr().err
    assert "no target to compare" in err and "--map A_NAME=B_NAME" in err and "gateway" in err
    code = cli(a, b, "--out", tmp_path / "out", "--map", "relay=gateway", "--map", "direct=mock")
    out = capsys.readouterr().out
    assert code == 0, out
    result = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert result["pairs"] == [["relay", "gateway"], ["direct", "mock"]]
    assert {t["target"] for t in result["tests"]} == {"relay→gateway", "direct→mock"}
    assert all(row["a"] is not None and row["b"] is not None for row in result["side_by_side"]
               if row["metric"] == "requests")  # fmt: skip
    assert result["unmatched_targets"] == ["A relay-buffered"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--map", "relay"), "use A_NAME=B_NAME"),
        (("--map", "nope=gateway"), "run A has no target 'nope'"),
        (("--map", "relay=nope"), "run B has no target 'nope'"),
        (("--map", "relay=gateway", "--map", "direct=gateway"), "paired twice"),
        (("--tolerance", "-1"), "--tolerance"),
    ],
)
def test_bad_usage_exits_2(newcomer_runs, tmp_path, capsys, args, message):
    code = cli(newcomer_runs / "steady5", newcomer_runs / "renamed", "--out", tmp_path / "o", *args)
    assert code == 2
    assert message in capsys.readouterr().err
