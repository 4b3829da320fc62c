"""ServerProcess: readiness from the ``listening on`` line, stop by PID, no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from relaybench.errors import RelaybenchError
from relaybench.procs import ServerProcess

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
