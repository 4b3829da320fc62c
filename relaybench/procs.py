"""Start and stop the project's servers as subprocesses, by PID.

Used by ``relaybench run`` (which starts its own mock and relay) and by the test fixtures.
A server announces readiness with one stdout line ``listening on http://H:P`` (the contract);
we read its port from that line, so port 0 (OS-chosen) works everywhere. Its output keeps
being drained by a thread, so a chatty server never blocks on a full pipe, and the last lines
are kept for the error message when it dies.

A child runs in its own session (Ctrl-C reaches only us, and we stop it by PID), so it would
outlive a harness that is killed outright (SIGKILL, a CI timeout). Every child the project starts
therefore calls ``die_with_parent()`` first thing: on Linux it asks the kernel for SIGTERM when
its parent goes (``PR_SET_PDEATHSIG``), then exits at once if that parent is already gone (the
expected parent PID comes in ``RELAYBENCH_PARENT_PID``, set by ``owned_child()``). This is done
in the child itself, not with Popen's ``preexec_fn``, which is unsafe once threads run.
"Parent" is the thread that started the child: start children from a thread that outlives them
(the main thread, as everywhere here).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

from relaybench.errors import RelaybenchError

_LISTENING = re.compile(r"listening on (http://\S+)")
_PR_SET_PDEATHSIG = 1
PARENT_PID_ENV = "RELAYBENCH_PARENT_PID"


def owned_child(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Popen arguments for a child the project owns (servers, Locust masters and workers).

    Its own session, so Ctrl-C reaches only us; ``env`` (default: ours) plus our PID, which the
    child's ``die_with_parent()`` checks.
    """
    return {
        "start_new_session": True,
        "env": {**(os.environ if env is None else env), PARENT_PID_ENV: str(os.getpid())},
    }


def die_with_parent() -> None:
    """Called first thing by every entry point the project spawns: end with the parent.

    A no-op in a process not started through ``owned_child()``. The variable is removed, so
    processes this one starts some other way do not inherit a stale parent PID.
    """
    expected = os.environ.pop(PARENT_PID_ENV, None)
    if expected is None:
        return
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if str(os.getppid()) != expected:  # it died before the request above: nobody would tell us
        raise SystemExit(f"parent process {expected} is gone; exiting")


def owned_command(argv: Sequence[str]) -> list[str]:
    """A non-Python program as an owned child: ``Popen(owned_command([...]), **owned_child())``.

    A small Python launcher calls ``die_with_parent()`` and then execs the program; the kernel's
    parent-death signal survives ``exec``, so e.g. ``redis-server`` ends with us too.
    """
    return [sys.executable, "-m", "relaybench.procs", *argv]


@contextlib.contextmanager
def redis_server(timeout: float = 10.0) -> Iterator[str]:
    """A private, owned ``redis-server`` on a free loopback port (no persistence): yields its
    ``redis://`` URL once it answers PING; stopped by PID on exit, and with us if we are killed."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RelaybenchError(
            "redis-server is not installed (python -m tools.ensure_binaries installs it)"
        )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(
        owned_command(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **owned_child(),
    )
    try:
        _wait_pong(proc, port, time.monotonic() + timeout)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(proc, 5.0)


def _wait_pong(proc: subprocess.Popen[bytes], port: int, deadline: float) -> None:
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        if proc.poll() is not None:
            raise RelaybenchError(f"redis-server on port {port} exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            raise RelaybenchError(f"redis-server on port {port} did not answer PING in time")
        time.sleep(0.05)


def stop_process(proc: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL; a process already gone is fine."""
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


class ServerProcess:
    """A server subprocess: ``start()`` waits for its ``listening on`` line; ``stop()`` ends it.

    ``args`` are the command after the Python interpreter, e.g. ``["-m", "mock_upstream",
    "--port", "0"]``. Use as a context manager so the process is stopped even on errors.
    """

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        self.name = name
        self.args = [sys.executable, *args]
        self.env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self.cwd = cwd
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None
        self.output: collections.deque[str] = collections.deque(maxlen=200)
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout: float = 20.0) -> ServerProcess:
        self.proc = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=self.cwd,
            **owned_child(self.env),  # Ctrl-C reaches us, and we stop it ourselves, by PID
        )
        self._reader = threading.Thread(target=self._drain, name=f"{self.name}-out", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                code = self.proc.poll()
                self.stop()
                why = f"exited with code {code}" if code is not None else f"not ready in {timeout}s"
                tail = "\n".join(list(self.output)[-20:])
                raise RelaybenchError(f"{self.name} {why}; its last output:\n{tail}")
        return self

    def _drain(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.output.append(line)
            if not self._ready.is_set() and (match := _LISTENING.search(line)):
                self.url = match.group(1)
                self._ready.set()

    def stop(self, timeout: float = 8.0) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        stop_process(proc, timeout)
        if self._reader:
            self._reader.join(2)
        return proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start() if self.proc is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


if __name__ == "__main__":  # the launcher of owned_command()
    die_with_parent()
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m relaybench.procs PROGRAM [ARGS...]")
    os.execvp(sys.argv[1], sys.argv[1:])
