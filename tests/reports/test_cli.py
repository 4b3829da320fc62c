"""The commands through the real ``relaybench`` dispatcher: exit codes and messages."""

import shutil

import pytest

from relaybench.cli import main


@pytest.fixture
def run(step_run, tmp_path):
    path = tmp_path / "run"
    shutil.copytree(step_run, path)
    return path


def test_report_command_rebuilds_and_prints_the_table(run, capsys):
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert "| target | requests |" in out and "report.html" in out
    assert (run / "report.html").exists() and (run / "summary.json").exists()


def test_report_on_a_folder_without_records_exits_2(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "has no records" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_report_with_a_truncated_record_line_notes_it(run, capsys):
    path = next((run / "records").glob("direct.*.jsonl"))
    with path.open("a") as fh:
        fh.write('{"target": "direct", "seq": 99999, "start_')
    assert main(["report", str(run)]) == 0
    err = capsys.readouterr().err
    assert "torn last line" in err
    assert "torn last line" in (run / "report.md").read_text()


def test_compare_and_its_bad_input(run, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(run), str(run), "--out", str(out)]) == 0
    assert "No significant difference" in capsys.readouterr().out
    assert main(["compare", str(run), str(tmp_path), "--out", str(out)]) == 2
    assert "has no records" in capsys.readouterr().err
    assert main(["compare", str(run), str(run)]) == 2
    assert "--out" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["compare", str(run), str(run), "--out", str(tmp_path / "file")]) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--headroom", "1.5"], "not within [0, 1)"),
        (["--slo-ttft-p95-ms", "fast"], "is not a number"),
        (["--peak-rps", "10", "--peak-multiple", "3"], "not allowed with argument"),
        (["--target", "nope"], "target 'nope' is not in this run"),
        (["--prices", "/nonexistent.toml"], "does not exist"),
        (["--peak-rps", "0"], "must be greater than 0"),
    ],
)
def test_plan_bad_input_exits_2(run, capsys, args, message):
    assert main(["plan", str(run), *args]) == 2
    assert message in capsys.readouterr().err


def test_plan_prints_capacity_and_writes_plan_json(run, capsys):
    code = main(["plan", str(run), "--slo-ttft-p95-ms", "1000", "--slo-error-rate", "0.05",
                 "--peak-multiple", "10", "--headroom", "0.3"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "Highest load meeting the SLOs" in out and "Replicas for a peak" in out
    assert "GPT-4.1" in out
    assert (run / "plan.json").exists()


def test_plan_on_a_run_without_steps_says_so(tmp_path, capsys):
    from reports.synthetic import SyntheticRun, write_run

    write_run(tmp_path, SyntheticRun(steps=((3, 2.0),)))
    assert main(["plan", str(tmp_path), "--peak-rps", "50"]) == 2  # issue 12: not a silent 0
    err = capsys.readouterr().err
    assert "is a steady run without load steps" in err
    assert "relaybench run --scenario step" in err and "relaybench search" in err
    assert not (tmp_path / "plan.json").exists()


def test_report_with_a_corrupt_run_json_still_builds(run, capsys):
    (run / "run.json").write_text("{not json")
    assert main(["report", str(run)]) == 0
    assert "run.json is unreadable" in capsys.readouterr().err
    assert "run.json is unreadable" in (run / "report.md").read_text()


def test_compare_runs_without_a_common_target(tmp_path, capsys):
    from reports.synthetic import SyntheticRun, SyntheticTarget, write_run

    write_run(tmp_path / "a", SyntheticRun(steps=((2, 2.0),), targets=(SyntheticTarget("x"),)))
    write_run(tmp_path / "b", SyntheticRun(steps=((2, 2.0),), targets=(SyntheticTarget("y"),)))
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out",
                 str(tmp_path / "out")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "no target to compare: run A has x, run B has y" in err and "--map" in err
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out",
                 str(tmp_path / "out"), "--map", "x=y"]) == 0  # fmt: skip
    assert "x→y" in capsys.readouterr().out
