"""The API key reaches the target and no output: not the run folder, not the temp config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from relay.keys import create_key
from relaybench import credentials
from relaybench.run.config import LoadConfig, ShapeParams, Target
from relaybench.run.servers import BENCH_PLAN, BENCH_PLANS
from tests.hardening.helpers import records, run


@pytest.fixture
def keyed_relay(start_server, tmp_path: Path):
    """A relay that accepts exactly one key, in front of a fast mock: (url, key)."""
    mock = start_server("mock_upstream", "--ttft-ms", "20", "--itl-ms", "2")
    keys = tmp_path / "keys.json"
    key = create_key(keys, BENCH_PLAN, BENCH_PLANS)
    relay = start_server("relay", "--upstream-url", mock.url, "--keys-file", str(keys))
    return relay.url, key


def _files_holding(root: Path, secret: str) -> list[Path]:
    needle = secret.encode()
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.parametrize("source", ["flag", "flag=", "env", "file"])
def test_no_file_of_the_run_folder_holds_the_key(keyed_relay, tmp_path: Path, source) -> None:
    url, key = keyed_relay
    args, env = [], {}
    if source == "flag":
        args = ["--api-key", key]
    elif source == "flag=":
        args = [f"--api-key={key}"]
    elif source == "env":
        env = {credentials.API_KEY_ENV: key}
    else:
        key_file = tmp_path / "key.txt"
        key_file.write_text(key + "\n")
        args = ["--api-key-file", str(key_file)]
    out = tmp_path / "run"
    done = run(
        "run", "--target", f"relay={url}", "--users", "2", "--duration", "2",
        "--max-tokens", "5", "--out", str(out), *args, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    recs = records(out, "relay")
    assert recs and all(r["ok"] for r in recs), recs[:1]  # the relay took the key: it was sent
    assert (out / "report.md").exists() and (out / "summary.json").exists()
    assert _files_holding(out, key) == []
    assert key not in done.stdout + done.stderr
    command = json.loads((out / "run.json").read_text())["command"]
    if source.startswith("flag"):
        assert "***" in command
    assert json.loads((out / "summary.json").read_text())["run"]["command"] == command


def test_a_bad_key_source_is_a_usage_error(tmp_path: Path) -> None:
    target = ("run", "--target", "t=http://127.0.0.1:9")
    done = run(*target, "--api-key-file", str(tmp_path / "missing"))
    assert done.returncode == 2 and "--api-key-file" in done.stderr
    empty = tmp_path / "empty"
    empty.write_text("\n")
    done = run(*target, "--api-key-file", str(empty))
    assert done.returncode == 2 and "first line is empty" in done.stderr
    done = run(*target, "--api-key", "k", "--api-key-file", str(empty))
    assert done.returncode == 2 and "give one of them" in done.stderr


def test_the_locust_config_file_has_no_key(tmp_path: Path) -> None:
    cfg = LoadConfig(
        run_dir=str(tmp_path),
        target=Target("t", "http://127.0.0.1:9"),
        shape=ShapeParams("steady", 1, 1.0),
        api_key="rk-must-not-be-written",
    )
    path = tmp_path / "load.json"
    cfg.dump(path)
    assert b"rk-must-not-be-written" not in path.read_bytes()
    assert LoadConfig.load(path).api_key is None
    env = credentials.child_env("rk-k", {"PATH": "/bin", credentials.API_KEY_ENV: "user's"})
    assert env == {"PATH": "/bin", credentials.API_KEY_ENV: "rk-k"}
    assert credentials.API_KEY_ENV not in credentials.child_env(None, env)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temp_dirs_of_dead_runs_are_removed(tmp_path: Path) -> None:
    dead = _dead_pid()
    stale = [tmp_path / f"relaybench-{dead}-abc", tmp_path / f"relaybench-keys-{dead}-x"]
    live = tmp_path / f"relaybench-{os.getpid()}-abc"
    other = [tmp_path / "relaybench-nopid", tmp_path / f"someone-{dead}-abc"]
    for d in [*stale, live, *other]:
        d.mkdir()
        (d / "load.json").write_text("{}")
    removed = credentials.remove_stale_tempdirs(tmp_path)
    assert sorted(removed) == sorted(stale)
    assert all(not d.exists() for d in stale)
    assert live.exists() and all(d.exists() for d in other)


def test_the_next_run_cleans_up_after_a_killed_one(start_server, tmp_path: Path) -> None:
    mock = start_server("mock_upstream", "--ttft-ms", "20", "--itl-ms", "2")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    stale = tmp / f"relaybench-{_dead_pid()}-left"
    stale.mkdir()
    (stale / "load.json").write_text('{"api_key": "rk-old"}')
    done = run(
        "run", "--target", f"direct={mock.url}", "--users", "1", "--duration", "1",
        "--max-tokens", "5", "--out", str(tmp_path / "run"), env={"TMPDIR": str(tmp)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not stale.exists()
    assert list(tmp.iterdir()) == []  # and the run removed its own
