"""--relay-workers: the worker-count list, the private Redis, and the scaling verdict."""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
from urllib.parse import urlsplit

import psutil
import pytest

from relaybench.errors import RelaybenchError
from relaybench.search.scaling import redis_server, scaling, worker_counts


def test_worker_counts() -> None:
    assert worker_counts("4,1,2") == [1, 2, 4]
    for bad in ("", "0,1", "1,1", "two"):
        with pytest.raises(argparse.ArgumentTypeError):
            worker_counts(bad)


def test_efficiency_and_the_cores_setting_the_limit() -> None:
    out = scaling({1: 10.0, 2: 18.0, 4: 20.0}, {1: "found", 2: "found", 4: "found"}, cpus=2)
    rows = {r["workers"]: r for r in out["rows"]}
    assert rows[1]["efficiency"] == 1.0 and rows[2]["efficiency"] == 0.9
    assert rows[4]["efficiency"] == 0.5
    assert all(r["core_bound"] for r in out["rows"])  # 1 worker + loadgen + mock > 2 cores
    assert "From 1 worker(s)" in out["verdict"] and "the cores, not the relay" in out["verdict"]
    roomy = scaling({1: 10.0, 2: 19.0}, {1: "found", 2: "found"}, cpus=8)
    assert not any(r["core_bound"] for r in roomy["rows"])
    assert "core of its own" in roomy["verdict"]
    missing = scaling({1: None, 2: 12.0}, {1: "harness-bound", 2: "found"}, cpus=8)
    assert [r["efficiency"] for r in missing["rows"]] == [None, None]


def test_the_private_redis_answers_and_is_stopped() -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (tools/ensure_binaries.py installs it)")
    with redis_server() as url:
        port = urlsplit(url).port
        with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
            conn.sendall(b"PING\r\n")
            assert conn.recv(16).startswith(b"+PONG")
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_no_redis_server_says_what_needs_it(monkeypatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    needs = "--relay-workers above 1 needs redis-server"
    with pytest.raises(RelaybenchError, match=needs), redis_server():
        pass


@pytest.mark.skipif(
    sys.platform != "linux" or shutil.which("redis-server") is None,
    reason="PR_SET_PDEATHSIG is Linux-only; redis-server is not installed",
)
def test_the_private_redis_does_not_outlive_a_killed_search() -> None:
    code = (
        "import time\n"
        "from relaybench.search.scaling import redis_server\n"
        "with redis_server() as url:\n"
        "    print(url, flush=True)\n"
        "    time.sleep(60)\n"
    )
    search = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    children: list[psutil.Process] = []
    try:
        assert search.stdout is not None
        assert search.stdout.readline().startswith("redis://")
        children = psutil.Process(search.pid).children()
        assert [c.name() for c in children] == ["redis-server"]
        search.kill()  # SIGKILL: no finally of the search runs
        search.wait()
        _, alive = psutil.wait_procs(children, timeout=5)
        assert not alive, "redis-server outlived the killed search"
    finally:
        if search.poll() is None:
            search.kill()
            search.wait()
        for child in children:
            if child.is_running():
                child.kill()
