"""A private redis-server for the Redis source's tests (skipped where none is installed)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from relaybench.procs import redis_server


@pytest.fixture
def redis_url() -> Iterator[str]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (tools/ensure_binaries.py installs it)")
    with redis_server() as url:
        yield url
