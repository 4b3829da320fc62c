"""Synthetic run folders for the gate tests, on top of the reports' synthetic generator.

``reports.synthetic`` writes records with a known latency model (TTFT lognormal around
``ttft_ms``, a relay adding ``relay_lag_ms`` to every chunk lag); ``reports.summary`` then builds
the real summary.json from them, so the gate is tested on the same files a real run leaves.
"""

from __future__ import annotations

import json
from pathlib import Path

from reports.summary import write_summary
from reports.synthetic import DEFAULT_TARGETS, SyntheticRun, SyntheticTarget, write_run

__all__ = ["DEFAULT_TARGETS", "SyntheticTarget", "load_summary", "make_run", "write_toml"]


def make_run(
    path: Path,
    *,
    ttft_ms: float = 200.0,
    users: int = 20,
    seconds: float = 10.0,
    seed: int = 1,
    targets: tuple[SyntheticTarget, ...] = DEFAULT_TARGETS,
    summary: bool = True,
    **spec: object,
) -> Path:
    """A run folder (records + summary.json). 20 users for 10 s: ~400 requests per target."""
    run = SyntheticRun(
        steps=((users, seconds),), ttft_ms=ttft_ms, seed=seed, targets=targets, **spec
    )
    write_run(path, run)
    if summary:
        write_summary(path)
    return path


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def load_summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())
