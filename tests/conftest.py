"""Shared fixtures: real server subprocesses on 127.0.0.1 with OS-chosen ports, always stopped."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Sequence

import pytest

from relaybench.procs import ServerProcess, redis_server

StartServer = Callable[..., ServerProcess]


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Start servers by module; every one is stopped by PID at teardown, pass or fail.

    ``start_server("mock_upstream", "--ttft-ms", "50")`` -> a started ServerProcess with ``.url``.
    """
    started: list[ServerProcess] = []

    def start(module: str, *args: str, env: dict[str, str] | None = None) -> ServerProcess:
        argv: Sequence[str] = ["-m", module, "--host", "127.0.0.1", "--port", "0", *args]
        server = ServerProcess(module, argv, env=env)
        started.append(server)
        return server.start()

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A private redis-server on a free port, stopped by PID (``relaybench.procs``)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (tools/ensure_binaries.py installs it)")
    with redis_server() as url:
        yield url
