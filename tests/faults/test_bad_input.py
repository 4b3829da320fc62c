"""Bad input: each stops with a clear message and the right exit code, nothing left running."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import orjson
import psutil
import pytest

from relay.keys import create_key
from relaybench.procs import ServerProcess

from .conftest import Faults, by_name
from .proxies import ThreadServer, key_echo, not_openai


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_target_stops_before_anything_runs(faults: Faults, capsys) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    code, doc = faults("--target", f"gone={url}")
    assert code == 2 and doc is None
    err = capsys.readouterr().err
    assert "target gone at" in err and "unreachable" in err
    assert "mock upstream" not in capsys.readouterr().out  # no mock was started


def test_an_unreachable_targets_url_credentials_are_not_shown(faults: Faults, capsys) -> None:
    url = f"http://me:pw-never-shown@127.0.0.1:{closed_port()}"
    code, doc = faults("--target", f"gone={url}")
    assert code == 2 and doc is None
    err = capsys.readouterr().err
    assert "target gone at http://***@127.0.0.1:" in err and "pw-never-shown" not in err
    code, _ = faults("--target", "bad=ftp://me:pw-never-shown@h")
    assert code == 2 and "pw-never-shown" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--target", "nourl"], "use NAME=URL"),
        (["--target", "x=ftp://h"], "use NAME=URL"),
        (["--mock-url", "http://127.0.0.1:1", "--mock-port", "9"], "--mock-port applies"),
        (["--scenarios", "cut,nope"], "unknown scenario 'nope'"),
        (["--under-load", "-1"], "--under-load"),
        (["--under-load", "1001"], "not within [0, 1000]"),
        (["--max-hang-s", "0"], "--max-hang-s"),
        (["--api-key-file", "/nonexistent/key.txt"], "--api-key-file /nonexistent/key.txt: cannot"),
        (["--api-key-file", "/dev/null"], "--api-key-file /dev/null: the first line is empty"),
        (["--api-key", "k", "--api-key-file", "/dev/null"], "give one of them"),
        (["--api-key", " "], "--api-key is empty"),
    ],
)
def test_bad_usage_is_exit_2(faults: Faults, capsys, args: list[str], words: str) -> None:
    code, doc = faults(*args)
    assert code == 2 and doc is None
    assert words in capsys.readouterr().err


def test_a_mock_url_without_the_request_log_is_refused(faults: Faults, capsys) -> None:
    with ThreadServer(not_openai) as server:
        code, _ = faults("--mock-url", server.url)
    assert code == 2
    assert "has no request log" in capsys.readouterr().err


def test_a_target_that_is_not_openai_compatible_says_what_it_got(
    faults: Faults, mock_url: str
) -> None:
    with ThreadServer(not_openai) as server:
        code, doc = faults(
            "--target",
            f"web={server.url}",
            "--mock-url",
            mock_url,
            "--scenarios",
            "status_500,cut,cancel_streaming",
        )
    assert code == 1 and doc is not None
    results = by_name(doc)
    assert results["clean_stream"]["verdict"] == "FAIL"
    assert "HTTP 404 text/html" in results["clean_stream"]["value"]
    assert "not an OpenAI SSE stream" in results["clean_stream"]["detail"]
    assert "HTTP 404 text/html" in results["cut"]["value"]
    assert results["cancel_streaming"]["verdict"] == "FAIL"
    assert "ended before the client left" in results["cancel_streaming"]["detail"]


def test_a_relay_needing_a_key_stops_at_the_clean_stream(
    faults: Faults, mock_url: str, tmp_path: Path, capsys
) -> None:
    keys = tmp_path / "keys.json"
    create_key(keys, "unlimited")
    args = ["-m", "relay", "--host", "127.0.0.1", "--port", "0", "--upstream-url", mock_url]
    with ServerProcess("relay", [*args, "--keys-file", str(keys)]) as relay:
        code, doc = faults("--target", f"locked={relay.url}", "--mock-url", mock_url)
        assert code == 2 and doc is None
        assert "(pass --api-key, --api-key-file or RELAYBENCH_API_KEY)" in capsys.readouterr().err
        code, _ = faults(
            "--target", f"locked={relay.url}", "--mock-url", mock_url, "--api-key", "sk-wrong"
        )
        assert code == 2
        err = capsys.readouterr().err
        assert "the API key was refused" in err and "sk-wrong" not in err


def test_a_target_whose_upstream_is_not_the_mock_is_named(
    faults: Faults, mock_url: str, capsys
) -> None:
    args = ["-m", "mock_upstream", "--host", "127.0.0.1", "--port", "0"]
    with ServerProcess("other mock", args) as other:
        code, doc = faults("--target", f"elsewhere={other.url}", "--mock-url", mock_url)
    assert code == 2 and doc is None
    assert f"point elsewhere's upstream URL at {mock_url}" in capsys.readouterr().err


def test_ctrl_c_writes_a_partial_scorecard_and_stops_the_servers(tmp_path: Path) -> None:
    out = tmp_path / "partial"
    proc = subprocess.Popen(
        [sys.executable, "-m", "relaybench", "faults", "--out", str(out)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "bundled relay" in proc.stdout.readline()  # servers up, the suite starting
        servers = psutil.Process(proc.pid).children(recursive=True)
        assert len(servers) == 4  # the mock and three relays
        assert "clean stream PASS" in proc.stdout.readline()  # the rest is running now
        proc.send_signal(signal.SIGINT)  # well before the hang scenario's 5 s are over
        assert proc.wait(30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    doc = orjson.loads((out / "faults.json").read_bytes())
    assert doc["run"]["interrupted"] is True
    names = [entry["name"] for entry in doc["scenarios"]]
    assert "clean_stream" in names and "hang" not in names
    assert "interrupted: partial scorecard" in (out / "faults.md").read_text()
    assert not [s.pid for s in servers if psutil.pid_exists(s.pid)]


def test_a_key_the_target_echoes_back_is_still_written_nowhere(
    faults: Faults, mock_url: str, capsys
) -> None:
    with ThreadServer(key_echo) as server:
        code, doc = faults(
            "--target", f"echo={server.url}", "--mock-url", mock_url, "--api-key", "sk-echoed-1"
        )
    assert code == 2 and doc is None
    err = capsys.readouterr().err
    assert "invalid key ***" in err and "sk-echoed-1" not in err
