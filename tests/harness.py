"""Shared by the end-to-end tests: ``relaybench`` as a subprocess, and a run folder read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

RELAYBENCH = [sys.executable, "-m", "relaybench"]


def relaybench(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``relaybench ARGS…``, without the caller's ``RELAYBENCH_API_KEY`` unless ``env`` sets it."""
    full_env = {k: v for k, v in os.environ.items() if k != "RELAYBENCH_API_KEY"}
    full_env.update(env or {})
    return subprocess.run(
        [*RELAYBENCH, *args], capture_output=True, text=True, timeout=timeout, env=full_env
    )


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``relaybench run ARGS…``."""
    return relaybench("run", *args, timeout=timeout)


def records(run_dir: Path, target: str = "direct") -> list[dict]:
    out = []
    for path in sorted((run_dir / "records").glob(f"{target}.*.jsonl")):
        out += [json.loads(line) for line in path.read_text().splitlines()]
    return out


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def mock_stats(url: str) -> dict:
    with urllib.request.urlopen(url + "/mock/stats", timeout=5) as resp:
        return json.loads(resp.read())
