"""``relaybench gate`` end to end on synthetic run folders: every check kind, every exit code."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from relaybench.cli import main as relaybench

from .runs import DEFAULT_TARGETS, SyntheticTarget, load_summary, make_run, write_toml


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {
        "base": make_run(root / "base", seed=1),
        "same": make_run(root / "same", seed=2),  # same distributions, other draws
        "slow": make_run(root / "slow", seed=3, ttft_ms=240.0),  # TTFT shifted by +20%
        "errors": make_run(root / "errors", seed=4, error_rate=0.05),
        "degraded": make_run(root / "degraded", seed=5, loadgen_cpu_pct=99.0),
        "all_failed": make_run(root / "all_failed", seed=8, error_rate=1.0),
        "relay_only": make_run(root / "relay_only", seed=6, targets=(DEFAULT_TARGETS[1],)),
        "no_stamps": make_run(
            root / "no_stamps",
            seed=7,
            targets=(SyntheticTarget("ext", kind="external", stamps=False),),
        ),
    }


def gate(capsys, run: Path, toml: Path, *extra: str) -> tuple[int, str, str]:
    code = relaybench(["gate", str(run), "--thresholds", str(toml), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def line(out: str, metric: str) -> str:
    (found,) = [row for row in out.splitlines() if f" {metric} " in row]
    return found


# -- absolute ----------------------------------------------------------------------------------


def test_absolute_pass(tmp_path, runs, capsys):
    toml = write_toml(
        tmp_path / "t.toml",
        '[relay]\n"ttft_ms.p95" = "<= 800"\n"error_rate" = "<= 0.01"\n'
        '"output_tokens_per_s" = ">= 100"\n',
    )
    code, out, _ = gate(capsys, runs["base"], toml)
    assert code == 0, out
    summary = load_summary(runs["base"])["targets"]["relay"]
    p95 = line(out, "ttft_ms.p95")
    assert p95.startswith("PASS") and "relay" in p95 and "<= 800" in p95
    assert f"{summary['ttft_ms']['p95']:.4g}" in p95  # the summary's own number
    assert out.splitlines()[-1].startswith("gate: PASS (4 passed, 0 failed")


def test_absolute_fail(tmp_path, runs, capsys):
    toml = write_toml(tmp_path / "t.toml", '[relay]\n"ttft_ms.p50" = "<= 100"\n')
    code, out, _ = gate(capsys, runs["base"], toml)
    assert code == 1
    assert line(out, "ttft_ms.p50").startswith("FAIL")
    assert "gate: FAIL (1 passed, 1 failed" in out


def test_error_rate_fails_on_a_run_with_errors(tmp_path, runs, capsys):
    toml = write_toml(tmp_path / "t.toml", '[relay]\n"error_rate" = "<= 0.01"\n')
    code, out, _ = gate(capsys, runs["errors"], toml)
    entry = load_summary(runs["errors"])["targets"]["relay"]
    rate = (entry["requests"] - entry["ok"]) / entry["requests"]
    assert rate > 0.02
    assert code == 1
    assert line(out, "error_rate").startswith("FAIL")
    assert f"{rate:.4g}" in line(out, "error_rate")


# -- relative ----------------------------------------------------------------------------------

RELATIVE = '[relay]\n"ttft_ms.p50" = "<= +10%"\n"ttft_ms.p95" = "<= +10%"\n'


def test_relative_passes_on_the_same_distribution(tmp_path, runs, capsys):
    toml = write_toml(tmp_path / "t.toml", RELATIVE)
    code, out, _ = gate(capsys, runs["same"], toml, "--baseline", str(runs["base"]))
    assert code == 0, out
    assert "baseline health.degraded" in out.replace("  ", " ").replace("  ", " ")
    assert re.search(r"change [+-]\d+\.\d% \[[+-]\d+\.\d%, [+-]\d+\.\d%\] 95% CI", out)


def test_relative_flags_a_20_percent_ttft_shift(tmp_path, runs, capsys):
    toml = write_toml(tmp_path / "t.toml", RELATIVE)
    code, out, _ = gate(capsys, runs["slow"], toml, "--baseline", str(runs["base"]))
    assert code == 1
    p50 = line(out, "ttft_ms.p50")
    assert p50.startswith("FAIL") and "significant" in p50 and "not significant" not in p50
    low, high = (float(x) for x in re.search(r"\[([+-][\d.]+)%, ([+-][\d.]+)%\]", p50).groups())
    assert 10 < low < 20 < high < 30  # the interval brackets the true +20%
    assert "(n=" in p50  # sample sizes shown


def test_relative_tolerance_absorbs_a_real_but_small_change(tmp_path, runs, capsys):
    toml = write_toml(tmp_path / "t.toml", '[relay]\n"ttft_ms.p50" = "<= +30%"\n')
    code, out, _ = gate(capsys, runs["slow"], toml, "--baseline", str(runs["base"]))
    assert code == 0, out  # +20% is real, and within the +30% tolerance


def test_relative_improvement_never_fails_a_slower_is_worse_check(tmp_path, runs, capsys):
    toml = write_toml(tmp_path / "t.toml", RELATIVE)
    code, out, _ = gate(capsys, runs["base"], toml, "--baseline", str(runs["slow"]))
    assert code == 0, out
    assert re.search(r"change -1\d\.\d%", line(out, "ttft_ms.p50"))


def test_relative_fallback_rules_for_rates(tmp_path, runs, capsys):
    toml = write_toml(
        tmp_path / "t.toml",
        '[relay]\n"output_tokens_per_s" = ">= -5%"\n"requests_per_s" = ">= -5%"\n',
    )
    code, out, _ = gate(capsys, runs["slow"], toml, "--baseline", str(runs["base"]))
    assert code == 1
    tps = line(out, "output_tokens_per_s")
    assert tps.startswith("FAIL") and "rank test" in tps and "significant" in tps
    rps = line(out, "requests_per_s")
    assert rps.startswith("FAIL") and "point comparison" in rps
    code, out, _ = gate(capsys, runs["same"], toml, "--baseline", str(runs["base"]))
    assert code == 0, out


# -- derived -----------------------------------------------------------------------------------


def test_derived_pass(tmp_path, runs, capsys):
    toml = write_toml(
        tmp_path / "t.toml",
        "[derived]\nslo_ttft_ms = 1000\n"
        '"relay_added_ttft_ms.p50" = "<= 50"\n'
        '"relay_added_chunk_lag_ms.p50" = "<= 5"\n'
        '"relay_added_first_token_lag_ms.p95" = "<= 5"\n'
        '"streaming_ttft_reduction_pct.p50" = ">= 50"\n'
        '"goodput_pct" = ">= 95"\n',
    )
    code, out, _ = gate(capsys, runs["base"], toml)
    assert code == 0, out
    summary = load_summary(runs["base"])["targets"]
    lag = line(out, "relay_added_chunk_lag_ms.p50")
    expected = summary["relay"]["chunk_lag_ms"]["p50"] - summary["direct"]["chunk_lag_ms"]["p50"]
    assert 1.2 < expected < 1.8  # the synthetic relay adds 1.5 ms to every chunk
    assert f"{expected:.4g}" in lag
    reduction = line(out, "streaming_ttft_reduction_pct.p50")
    r, b = summary["relay"]["ttft_ms"]["p50"], summary["relay-buffered"]["ttft_ms"]["p50"]
    assert f"{100 * (1 - r / b):.4g}" in reduction
    assert "100" in line(out, "goodput_pct")


def test_derived_fail(tmp_path, runs, capsys):
    toml = write_toml(
        tmp_path / "t.toml",
        "[derived]\nslo_ttft_ms = 200\n"
        '"relay_added_chunk_lag_ms.p50" = "<= 1"\n'
        '"streaming_ttft_reduction_pct.p50" = ">= 90"\n'
        '"goodput_pct" = ">= 95"\n',
    )
    code, out, _ = gate(capsys, runs["base"], toml)
    assert code == 1
    for metric in ("relay_added_chunk_lag_ms.p50", "streaming_ttft_reduction_pct.p50"):
        assert line(out, metric).startswith("FAIL")
    goodput = line(out, "goodput_pct")  # about half the requests are under the 200 ms median
    assert goodput.startswith("FAIL")
    good, total = (int(x) for x in re.search(r"(\d+)/(\d+) relay requests", goodput).groups())
    assert 0.3 < good / total < 0.7


def test_derived_roles_can_be_renamed(tmp_path, runs, capsys):
    toml = write_toml(
        tmp_path / "t.toml",
        '[derived]\nbuffered_target = "direct"\n"streaming_ttft_reduction_pct.p50" = "<= 5"\n',
    )
    code, out, _ = gate(capsys, runs["base"], toml)
    assert code == 0, out  # relay vs direct: both streaming, no reduction
    assert "vs direct ttft" in out


# -- degraded ----------------------------------------------------------------------------------


def test_degraded_run_is_inconclusive_unless_allowed(tmp_path, runs, capsys):
    assert load_summary(runs["degraded"])["health"]["degraded"]
    toml = write_toml(tmp_path / "t.toml", '[relay]\n"ttft_ms.p95" = "<= 800"\n')
    code, out, _ = gate(capsys, runs["degraded"], toml)
    assert code == 1
    assert line(out, "health.degraded").startswith("FAIL")
    assert "inconclusive" in out and "gate: INCONCLUSIVE" in out
    assert "CPU" in line(out, "health.degraded")  # the reason is shown
    code, out, _ = gate(capsys, runs["degraded"], toml, "--allow-degraded")
    assert code == 0, out
    assert "allowed by --allow-degraded" in out


def test_degraded_baseline_is_inconclusive_too(tmp_path, runs, capsys):
    toml = write_toml(tmp_path / "t.toml", RELATIVE)
    code, out, _ = gate(capsys, runs["same"], toml, "--baseline", str(runs["degraded"]))
    assert code == 1 and "the baseline is degraded" in out


# -- outputs -----------------------------------------------------------------------------------


def test_junit_xml_structure(tmp_path, runs, capsys):
    toml = write_toml(
        tmp_path / "t.toml",
        '[relay]\n"ttft_ms.p50" = "<= +10%"\n"error_rate" = "<= 0.01"\n'
        '[derived]\n"relay_added_ttft_ms.p50" = "<= 50"\n',
    )
    junit = tmp_path / "out" / "gate.xml"
    code, _, _ = gate(
        capsys, runs["slow"], toml, "--baseline", str(runs["base"]), "--junit", str(junit)
    )
    assert code == 1
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == 5  # run health, baseline health, three checks
    assert suite.get("tests") == root.get("tests") == "5"
    assert suite.get("failures") == root.get("failures") == "1"
    assert suite.get("errors") == "0" and suite.get("skipped") == "0"
    for case in cases:
        assert case.get("name") and case.get("classname", "").startswith("relaybench.gate.")
        assert case.get("time") is not None
    failed = [c for c in cases if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["ttft_ms.p50"]
    failure = failed[0].find("failure")
    assert failure.get("type") == "relative" and "CI" in failure.get("message")
    assert failed[0].get("classname") == "relaybench.gate.relay"
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["verdict"] == "FAIL" and props["baseline"] == str(runs["base"])


def test_markdown_and_github_step_summary(tmp_path, runs, capsys, monkeypatch):
    toml = write_toml(tmp_path / "t.toml", '[relay]\n"ttft_ms.p95" = "<= 800 "\n')
    step = tmp_path / "step_summary.md"
    step.write_text("# earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    md = tmp_path / "gate.md"
    code, _, _ = gate(capsys, runs["base"], toml, "--markdown", str(md))
    assert code == 0
    text = md.read_text()
    assert text.startswith("## relaybench gate: ✅ PASS")
    rows = [r for r in text.splitlines() if r.startswith("| ")]
    assert rows[0] == "| Result | Target | Metric | Measured | Limit | Detail |"
    assert len(rows) == 3 and "| relay | ttft_ms.p95 |" in rows[2]
    gate(capsys, runs["degraded"], toml)
    appended = step.read_text()
    assert appended.startswith("# earlier step\n## relaybench gate: ✅ PASS")
    assert appended.count("## relaybench gate") == 2
    assert "⚠️ INCONCLUSIVE" in appended


def test_no_step_summary_when_unset(tmp_path, runs, capsys, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    toml = write_toml(tmp_path / "t.toml", '[relay]\n"ttft_ms.p95" = "<= 800"\n')
    assert gate(capsys, runs["base"], toml)[0] == 0
    assert not list(tmp_path.glob("*.md"))


def test_summary_rebuilt_from_records_when_absent(tmp_path, runs, capsys):
    run = tmp_path / "copy"
    shutil.copytree(runs["base"], run)
    (run / "summary.json").unlink()
    toml = write_toml(tmp_path / "t.toml", '[relay]\n"ttft_ms.p95" = "<= 800"\n')
    code, out, _ = gate(capsys, run, toml)
    assert code == 0, out


# -- bad input: exit 2 -------------------------------------------------------------------------


def expect_usage(capsys, argv: list[str]) -> str:
    code = relaybench(["gate", *map(str, argv)])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert err.startswith("error: ")
    assert "PASS" not in out and "FAIL" not in out
    return err


def test_toml_syntax_error_exit_2_with_file_and_line(tmp_path, runs, capsys):
    toml = write_toml(tmp_path / "t.toml", '[relay]\n"ttft_ms.p95" = "<= 800"\n"x" = \n')
    err = expect_usage(capsys, [runs["base"], "--thresholds", toml])
    assert str(toml) in err and "line 3" in err


def test_unknown_metric_exit_2_lists_known(tmp_path, runs, capsys):
    toml = write_toml(tmp_path / "t.toml", '[relay]\n"ttfb_ms.p95" = "<= 800"\n')
    err = expect_usage(capsys, [runs["base"], "--thresholds", toml])
    assert "unknown metric" in err and "ttft_ms.p95" in err and "error_rate" in err


def test_target_missing_from_run(tmp_path, runs, capsys):
    toml = write_toml(tmp_path / "t.toml", '[relay-v2]\n"ttft_ms.p95" = "<= 800"\n')
    err = expect_usage(capsys, [runs["base"], "--thresholds", toml])
    assert "'relay-v2'" in err and "direct, relay, relay-buffered" in err


def test_target_missing_from_baseline(tmp_path, runs, capsys):
    toml = write_toml(tmp_path / "t.toml", '[relay-buffered]\n"ttft_ms.p50" = "<= +10%"\n')
    err = expect_usage(
        capsys, [runs["base"], "--thresholds", toml, "--baseline", runs["relay_only"]]
    )
    assert "'relay-buffered' is not in the baseline" in err


def test_derived_target_missing(tmp_path, runs, capsys):
    toml = write_toml(tmp_path / "t.toml", '[derived]\n"relay_added_ttft_ms.p50" = "<= 50"\n')
    err = expect_usage(capsys, [runs["relay_only"], "--thresholds", toml])
    assert "needs target 'direct'" in err and "direct_target" in err


def test_relative_check_without_baseline(tmp_path, runs, capsys):
    toml = write_toml(tmp_path / "t.toml", RELATIVE)
    err = expect_usage(capsys, [runs["base"], "--thresholds", toml])
    assert "need --baseline" in err and "ttft_ms.p50" in err


def test_lag_metric_without_stamps(tmp_path, runs, capsys):
    toml = write_toml(tmp_path / "t.toml", '[ext]\n"chunk_lag_ms.p99" = "<= 5"\n')
    err = expect_usage(capsys, [runs["no_stamps"], "--thresholds", toml])
    assert "no chunk_lag_ms statistics" in err and "stamps" in err


def test_empty_run(tmp_path, runs, capsys):
    toml = write_toml(tmp_path / "t.toml", '[relay]\n"ttft_ms.p95" = "<= 800"\n')
    empty = tmp_path / "empty"
    (empty / "records").mkdir(parents=True)
    (empty / "records" / "relay.w1.jsonl").write_text("")
    err = expect_usage(capsys, [empty, "--thresholds", toml])
    assert "no readable record" in err or "no records" in err
    summary = load_summary(runs["base"])
    for entry in summary["targets"].values():
        entry["requests"] = entry["ok"] = 0
    (empty / "summary.json").write_text(json.dumps(summary))
    err = expect_usage(capsys, [empty, "--thresholds", toml])
    assert "empty run" in err
    bare = tmp_path / "bare"
    bare.mkdir()
    err = expect_usage(capsys, [bare, "--thresholds", toml])
    assert "not a run folder" in err


def test_unreadable_summary(tmp_path, runs, capsys):
    run = tmp_path / "broken"
    run.mkdir()
    (run / "summary.json").write_text("{not json")
    toml = write_toml(tmp_path / "t.toml", '[relay]\n"ttft_ms.p95" = "<= 800"\n')
    err = expect_usage(capsys, [run, "--thresholds", toml])
    assert "unreadable" in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([], "required"),
        (["RUN"], "--thresholds"),
        (["RUN", "--thresholds", "T", "--confidence", "1.5"], "confidence"),
        (["RUN", "--thresholds", "T", "--confidence", "high"], "not a number"),
        (["RUN", "--thresholds", "T", "--resamples", "10"], "at least 100"),
        (["RUN", "--thresholds", "T", "--bogus"], "unrecognized"),
        (["/nonexistent/run", "--thresholds", "T"], "is not a directory"),
    ],
)
def test_bad_command_lines(tmp_path, runs, capsys, argv, needle):
    toml = write_toml(tmp_path / "t.toml", '[relay]\n"ttft_ms.p95" = "<= 800"\n')
    argv = [{"RUN": str(runs["base"]), "T": str(toml)}.get(a, a) for a in argv]
    assert needle in expect_usage(capsys, argv)


def test_unwritable_output(tmp_path, runs, capsys):
    toml = write_toml(tmp_path / "t.toml", '[relay]\n"ttft_ms.p95" = "<= 800"\n')
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = relaybench(
        ["gate", str(runs["base"]), "--thresholds", str(toml), "--junit", str(blocker / "x.xml")]
    )
    assert code == 2
    assert "cannot write" in capsys.readouterr().err


def test_help_exits_0(capsys):
    with pytest.raises(SystemExit) as done:
        relaybench(["gate", "--help"])
    assert done.value.code == 0
    assert "--allow-degraded" in capsys.readouterr().out


def test_a_target_with_no_successful_request_fails_its_checks(tmp_path, runs, capsys):
    toml = write_toml(
        tmp_path / "t.toml",
        '[relay]\n"ttft_ms.p95" = "<= 800"\n"ttft_ms.p50" = "<= +10%"\n'
        '"output_tokens_per_s" = ">= -5%"\n'
        '[derived]\nslo_ttft_ms = 1000\n"relay_added_ttft_ms.p50" = "<= 50"\n'
        '"goodput_pct" = ">= 95"\n',
    )
    code, out, err = gate(capsys, runs["all_failed"], toml, "--baseline", str(runs["base"]))
    assert code == 1, err
    assert "no measurement" in line(out, "ttft_ms.p95")
    assert "no ttft_ms samples in the run" in line(out, "ttft_ms.p50")
    assert "no successful request in the run" in line(out, "output_tokens_per_s")
    assert "no measurement" in line(out, "relay_added_ttft_ms.p50")
    assert line(out, "goodput_pct").startswith("FAIL") and " 0 " in line(out, "goodput_pct")
    assert all(row.startswith("FAIL") for row in out.splitlines()[2:-1])


def test_confidence_option_changes_the_interval(tmp_path, runs, capsys):
    toml = write_toml(tmp_path / "t.toml", '[relay]\n"ttft_ms.p50" = "<= +10%"\n')
    widths = {}
    for level in ("0.8", "0.99"):
        args = ("--baseline", str(runs["base"]), "--confidence", level)
        _, out, _ = gate(capsys, runs["same"], toml, *args)
        p50 = line(out, "ttft_ms.p50")
        assert f"{float(level):.0%} CI" in p50
        low, high = (float(x) for x in re.search(r"\[([+-][\d.]+)%, ([+-][\d.]+)%\]", p50).groups())
        widths[level] = high - low
    assert widths["0.99"] > widths["0.8"]


def test_relative_check_on_a_zero_baseline_is_judged_not_a_usage_error(tmp_path, runs, capsys):
    """A percentile that was 0 in the baseline has no relative change to bootstrap."""
    zero = make_run(tmp_path / "zero", seed=1, ttft_ms=0.0)
    toml = write_toml(tmp_path / "t.toml", '[relay]\n"ttft_ms.p50" = "<= +10%"\n')
    code, out, _ = gate(capsys, zero, toml, "--baseline", str(zero))
    assert code == 0 and "point change" in line(out, "ttft_ms.p50"), out
    code, out, _ = gate(capsys, runs["base"], toml, "--baseline", str(zero))
    assert code == 1 and line(out, "ttft_ms.p50").startswith("FAIL"), out
