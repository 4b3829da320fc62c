"""ServerProcess: readiness from the ``listening on`` line, stop by PID, no orphans."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from relaybench.errors import RelaybenchError
from relaybench.procs import (
    PARENT_PID_ENV,
    ServerProcess,
    owned_child,
    redis_server,
    stop_process,
)

PARENT = """
import sys, time
from relaybench.procs import ServerProcess
server = ServerProcess("mock", ["-m", "mock_upstream", "--host", "127.0.0.1", "--port", "0"])
server.start()
print(server.pid, flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_start_reads_the_port_and_stop_exits_cleanly() -> None:
    server = ServerProcess("mock", ["-m", "mock_upstream", "--host", "127.0.0.1", "--port", "0"])
    with server:
        assert server.url.startswith("http://127.0.0.1:") and not server.url.endswith(":0")
    assert server.proc is not None and server.proc.returncode == 0


def test_a_server_that_dies_at_start_raises_with_its_output() -> None:
    server = ServerProcess("mock", ["-m", "mock_upstream", "--port", "not-a-port"])
    with pytest.raises(RelaybenchError, match="exited with code 2"):
        server.start()


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux-only")
def test_a_server_does_not_outlive_a_killed_harness() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    child = None
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
        parent.send_signal(signal.SIGKILL)  # no finally, no atexit: only the kernel can help
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), "the server outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child is not None and _alive(child):
            os.kill(child, signal.SIGKILL)  # the test failed: still leave nothing running


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux-only")
def test_relay_workers_die_within_5_s_of_a_killed_relay(start_server) -> None:
    relay = start_server("relay", "--auth", "off", "--workers", "3")
    assert relay.pid is not None
    workers = psutil.Process(relay.pid).children()
    assert len(workers) == 2
    os.kill(relay.pid, signal.SIGKILL)  # no handler runs: only the workers' own request helps
    _, alive = psutil.wait_procs(workers, timeout=5)
    for proc in alive:  # the test failed: still leave nothing running
        proc.kill()
    assert not alive, f"relay workers outlived their killed parent: {[p.pid for p in alive]}"


def test_a_child_whose_parent_is_already_gone_exits_at_once() -> None:
    code = "from relaybench.procs import die_with_parent; die_with_parent(); print('alive')"
    env = {**os.environ, PARENT_PID_ENV: "1"}  # not our parent: as if it died and we were adopted
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1
    assert "alive" not in done.stdout and "parent process 1 is gone" in done.stderr


def test_owned_children_get_our_pid_and_no_preexec_fn() -> None:
    kwargs = owned_child({"A": "b"})
    assert kwargs == {
        "start_new_session": True,
        "env": {"A": "b", PARENT_PID_ENV: str(os.getpid())},
    }


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux-only")
def test_a_non_python_child_dies_with_its_parent_too() -> None:
    parent_code = (
        "import subprocess, sys, time\n"
        "from relaybench.procs import owned_child, owned_command\n"
        "child = subprocess.Popen(owned_command(['sleep', '60']), **owned_child())\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True
    )
    child = None
    try:
        assert parent.stdout is not None
        child = psutil.Process(int(parent.stdout.readline()))
        deadline = time.monotonic() + 10
        while child.name() != "sleep" and time.monotonic() < deadline:  # the launcher has exec'd
            time.sleep(0.02)
        assert child.name() == "sleep"
        parent.kill()
        parent.wait()
        _, alive = psutil.wait_procs([child], timeout=5)
        assert not alive, "sleep outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child is not None and child.is_running():
            child.kill()


def _ping(url: str) -> bytes:
    host, port = url.removeprefix("redis://").split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=2) as conn:
        conn.sendall(b"PING\r\n")
        return conn.recv(16)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_redis_server_answers_then_is_stopped() -> None:
    with redis_server() as url:
        assert _ping(url).startswith(b"+PONG")
        (proc,) = [c for c in psutil.Process().children() if c.name() == "redis-server"]
    assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    with pytest.raises(OSError):
        _ping(url)


def test_redis_server_missing_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RelaybenchError, match="redis-server is not installed"), redis_server():
        pass


@pytest.mark.skipif(
    sys.platform != "linux" or shutil.which("redis-server") is None,
    reason="PR_SET_PDEATHSIG is Linux-only; redis-server is not installed",
)
def test_redis_server_does_not_outlive_a_killed_parent() -> None:
    code = (
        "import os, time\n"
        "from relaybench.procs import redis_server\n"
        "with redis_server() as url:\n"
        "    print(url, flush=True)\n"
        "    time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    children: list[psutil.Process] = []
    try:
        assert parent.stdout is not None
        url = parent.stdout.readline().strip()
        assert _ping(url).startswith(b"+PONG")
        children = psutil.Process(parent.pid).children()
        assert [c.name() for c in children] == ["redis-server"]
        parent.kill()  # no finally in the parent runs: only the kernel's signal can stop redis
        parent.wait()
        _, alive = psutil.wait_procs(children, timeout=5)
        assert not alive, "redis-server outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for child in children:
            if child.is_running():
                child.kill()


def test_stop_process_kills_what_ignores_sigterm_and_accepts_the_already_gone() -> None:
    stubborn = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", stubborn], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        stop_process(proc, 0.2)
        assert proc.returncode == -signal.SIGKILL
        stop_process(proc, 0.2)  # a second stop of an ended process is a no-op
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
