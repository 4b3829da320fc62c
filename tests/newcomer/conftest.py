"""Helpers for the newcomer tests: ``relaybench run`` as a subprocess against loopback servers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

RELAYBENCH = [sys.executable, "-m", "relaybench"]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RELAYBENCH, "run", *args], capture_output=True, text=True, timeout=timeout
    )


def records(run_dir: Path, target: str = "direct") -> list[dict]:
    out = []
    for path in sorted((run_dir / "records").glob(f"{target}.*.jsonl")):
        out += [json.loads(line) for line in path.read_text().splitlines()]
    return out


def load(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture
def mock(start_server):
    """A fast mock (50 ms TTFT, 5 ms ITL, answers exactly max_tokens)."""
    return start_server(
        "mock_upstream", "--ttft-ms", "50", "--itl-ms", "5", "--output-from-max-tokens"
    )
