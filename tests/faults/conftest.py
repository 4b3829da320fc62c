"""Fault-scorecard fixtures: one mock per module, and ``faults`` to run the command in-process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from relaybench import cli
from relaybench.procs import ServerProcess

Faults = Callable[..., tuple[int, dict[str, Any] | None]]


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    args = ["-m", "mock_upstream", "--host", "127.0.0.1", "--port", "0", "--retry-after-s", "1"]
    with ServerProcess("mock_upstream", args) as server:
        yield server.url


@pytest.fixture
def faults(tmp_path: Path) -> Faults:
    """``faults("--target", ...)`` -> (exit code, faults.json or None); ``--out`` is added."""

    def run(*args: str) -> tuple[int, dict[str, Any] | None]:
        out = tmp_path / "scorecard"
        code = cli.main(["faults", "--out", str(out), *args])
        path = out / "faults.json"
        return code, orjson.loads(path.read_bytes()) if path.exists() else None

    return run


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in doc["scenarios"]}
