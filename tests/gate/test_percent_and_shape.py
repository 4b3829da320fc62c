"""What a newcomer writes first: percents on absolute limits, unquoted dotted keys, and a baseline
of another shape (issue 12, item 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaybench.cli import main as relaybench
from relaybench.errors import UsageError
from reports.thresholds import parse_thresholds

from .runs import make_run, write_toml


def only(text: str):
    (check,) = parse_thresholds(text, "t.toml").checks
    return check


def test_an_unsigned_percent_on_error_rate_is_a_fraction():
    check = only('[relay]\n"error_rate" = "<= 1%"\n')
    assert (check.value, check.relative) == (pytest.approx(0.01), False)
    assert only('[relay]\n"error_rate" = "<= 0.5 %"\n').value == pytest.approx(0.005)
    assert only('[relay]\n"error_rate" = "<= 0%"\n').value == 0.0


def test_a_signed_percent_is_relative_whatever_the_metric():
    check = only('[relay]\n"error_rate" = "<= +10%"\n')
    assert (check.value, check.relative) == (pytest.approx(0.10), True)
    check = only('[relay]\n"output_tokens_per_s" = ">= -5%"\n')
    assert (check.value, check.relative) == (pytest.approx(-0.05), True)
    assert only('[relay]\n"ttft_ms.p50" = "<= +0%"\n').relative  # zero tolerance, still relative


def test_an_unsigned_percent_on_a_pct_metric_is_percentage_points():
    text = '[derived]\nslo_ttft_ms = 1000\n"goodput_pct" = ">= 99%"\n'
    check = only(text)
    assert (check.value, check.relative) == (99.0, False)
    check = only('[derived]\n"streaming_ttft_reduction_pct.p50" = ">= 70%"\n')
    assert (check.value, check.relative) == (70.0, False)


def test_an_unsigned_percent_on_a_latency_is_refused_naming_the_signed_form():
    with pytest.raises(UsageError) as err:
        parse_thresholds('[relay]\n"ttft_ms.p50" = "<= 10%"\n', "t.toml")
    message = err.value.message
    assert err.value.exit_code == 2
    assert "t.toml: [relay] 'ttft_ms.p50'" in message and "'<= +10%'" in message


def test_an_unquoted_dotted_key_gets_the_quoted_form():
    with pytest.raises(UsageError) as err:
        parse_thresholds('[relay]\nttft_ms.p95 = "<= 800"\n', "t.toml")
    message = err.value.message
    assert "unquoted dotted key" in message and '"ttft_ms.p95" = "<= 800"' in message
    assert "unknown metric" not in message
    with pytest.raises(UsageError) as err:  # several, and a list value
        parse_thresholds('[relay]\nttft_ms.p95 = ["<= 800", "<= +5%"]\nitl_ms.p50 = "<= 9"\n')
    assert '"ttft_ms.p95" = ["<= 800", "<= +5%"]; "itl_ms.p50" = "<= 9"' in err.value.message
    with pytest.raises(UsageError) as err:  # in [derived] too
        parse_thresholds('[derived]\nrelay_added_ttft_ms.p50 = "<= 20"\n')
    assert '"relay_added_ttft_ms.p50" = "<= 20"' in err.value.message


def test_a_dotted_key_before_any_table_names_the_target_table():
    with pytest.raises(UsageError) as err:
        parse_thresholds('ttft_ms.p95 = "<= 800"\n[relay]\n"error_rate" = "<= 1%"\n', "t.toml")
    message = err.value.message
    assert "outside any [TARGET] table" in message and '"ttft_ms.p95" = "<= 800"' in message


# -- the gate end to end: the percent rule measured, and the baseline's shape ---------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shape")
    return {
        "base": make_run(root / "base", seed=1),
        "same": make_run(root / "same", seed=2),
        "errors": make_run(root / "errors", seed=4, error_rate=0.05),
        "more_users": make_run(root / "more_users", seed=3, users=60, seconds=4.0),
        "step": make_run(root / "step", seed=5, scenario="step"),
    }


def gate(capsys, run: Path, *extra: str) -> tuple[int, str, str]:
    code = relaybench(["gate", str(run), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_error_rate_one_percent_fails_a_run_with_five_percent_errors(runs, tmp_path, capsys):
    toml = write_toml(tmp_path / "t.toml", '[relay]\n"error_rate" = "<= 1%"\n')
    code, out, _ = gate(capsys, runs["errors"], "--thresholds", str(toml))
    assert code == 1, out
    assert "FAIL  relay" in out and "error_rate" in out
    code, out, _ = gate(capsys, runs["base"], "--thresholds", str(toml))
    assert code == 0, out


def test_a_baseline_of_another_load_or_scenario_is_refused(runs, tmp_path, capsys):
    toml = write_toml(tmp_path / "t.toml", '[relay]\n"ttft_ms.p50" = "<= +10%"\n')
    args = ("--thresholds", str(toml), "--baseline")
    code, out, err = gate(capsys, runs["more_users"], *args, str(runs["base"]))
    assert code == 2 and "PASS" not in out
    assert "not the same shape" in err and "users 20 vs 60" in err
    assert "--allow-shape-mismatch" in err
    code, _, err = gate(capsys, runs["step"], *args, str(runs["base"]))
    assert code == 2 and "scenario steady vs step" in err
    code, out, _ = gate(capsys, runs["same"], *args, str(runs["base"]))  # same shape: gated
    assert code == 0, out


def test_allow_shape_mismatch_gates_and_says_what_differs(runs, tmp_path, capsys):
    toml = write_toml(tmp_path / "t.toml", '[relay]\n"ttft_ms.p50" = "<= +1000%"\n')
    code, out, _ = gate(
        capsys, runs["more_users"], "--thresholds", str(toml), "--baseline", str(runs["base"]),
        "--allow-shape-mismatch",
    )  # fmt: skip
    assert code == 0, out
    assert "note: baseline vs run differ in users 20 vs 60" in out


def test_an_absolute_only_file_ignores_the_baseline_shape(runs, tmp_path, capsys):
    toml = write_toml(tmp_path / "t.toml", '[relay]\n"error_rate" = "<= 1%"\n')
    code, out, _ = gate(
        capsys, runs["more_users"], "--thresholds", str(toml), "--baseline", str(runs["base"])
    )
    assert code == 0, out


def test_two_trace_runs_of_another_scale_or_window_differ_materially():
    from reports.shape import differences

    def meta(**traffic):
        base = {"trace": None, "trace_start_s": 0.0, "trace_window_s": 600.0, "speedup": 10.0,
                "rate_scale": 1.0}  # fmt: skip
        return {"scenario": "trace", "scenario_params": {"users": 500, "rate": None},
                "traffic": {**base, **traffic}}  # fmt: skip

    assert differences(meta(), meta()) == []
    scaled = differences(meta(), meta(rate_scale=10.0))
    assert [(d.what, d.a, d.b, d.material) for d in scaled] == [("rate_scale", 1.0, 10.0, True)]
    assert [d.what for d in differences(meta(), meta(trace_start_s=1800.0))] == ["trace_start_s"]
