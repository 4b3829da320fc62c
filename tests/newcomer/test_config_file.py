"""``relaybench run --config FILE``: the flags from TOML, the command line on top."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaybench.errors import UsageError
from relaybench.run.cli import parse
from tests.newcomer.conftest import load, records, run

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "run.toml"


def _file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return str(path)


def test_the_file_sets_the_flags_and_the_command_line_wins(tmp_path: Path) -> None:
    cfg = _file(
        tmp_path,
        'users = 7\nduration = "2m"\nmax-tokens = "10-20"\nweb = true\n'
        'target = ["a=http://127.0.0.1:1", "b=http://127.0.0.1:2"]\nbuffered = ["b"]\n',
    )
    plan = parse(["--config", cfg, "--out", str(tmp_path / "x")])
    assert plan.load.shape.users == 7 and plan.load.shape.duration_s == 120.0
    assert plan.load.max_tokens == (10, 20) and plan.load.web is True
    assert [t.name for t in plan.targets] == ["a", "b"] and plan.buffered == {"b"}
    plan = parse(["--config", cfg, "--users", "3", "--target", "c=http://127.0.0.1:3",
                  "--buffered", "c", "--out", str(tmp_path / "y")])  # fmt: skip
    assert plan.load.shape.users == 3 and plan.load.shape.duration_s == 120.0
    assert [t.name for t in plan.targets] == ["c"]  # the command line's list replaces the file's


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("userz = 5\n", "key 'userz' is not a relaybench run option"),
        ('api-key = "sk-secret"\n', "no secrets in a config file"),
        ("users = 0\n", "--users: must be at least 1"),
        ("users = [1, 2]\n", "key 'users': takes one value, not a list"),
        ('web = "yes"\n', "key 'web': an on/off flag"),
        ("users = true\n", "key 'users': takes a value, not true/false"),
        ("users = \n", "not valid TOML"),
    ],
)
def test_bad_files_name_the_key_and_the_file(tmp_path: Path, text: str, needle: str) -> None:
    cfg = _file(tmp_path, text)
    with pytest.raises(UsageError) as err:
        parse(["--config", cfg, "--out", str(tmp_path / "x")])
    assert needle in err.value.message and f"--config {cfg}" in err.value.message
    assert "sk-secret" not in err.value.message


def test_a_bad_file_exits_2_and_a_missing_one_too(tmp_path: Path) -> None:
    done = run("--config", _file(tmp_path, "userz = 5\n"), "--out", str(tmp_path / "a"))
    assert done.returncode == 2 and "key 'userz'" in done.stderr and "run.toml" in done.stderr
    done = run("--config", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "b"))
    assert done.returncode == 2 and "missing.toml: cannot read it" in done.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_example_file_runs(mock, tmp_path: Path) -> None:
    out = tmp_path / "run"
    # the example's own settings, pointed at a loopback mock and shortened for the test
    done = run("--config", str(EXAMPLE), "--target", f"direct={mock.url}", "--duration", "2",
               "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    meta = load(out / "run.json")
    assert meta["users"] == 5 and meta["seed"] == 7 and meta["duration_s"] == 2.0
    assert meta["max_tokens"] == [20, 40] and records(out)
