"""Synthetic run folders shared by the report tests (built once per session: they are read-only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reports.synthetic import SyntheticRun, write_run

KNEE_USERS = 20
STEP_USERS = (5, 10, 15, 20, 25, 30, 40)


@pytest.fixture(scope="session")
def step_run(tmp_path_factory) -> Path:
    """A step run whose TTFT is flat up to 20 users and climbs 40 ms per user beyond."""
    path = tmp_path_factory.mktemp("step")
    spec = SyntheticRun(
        scenario="step",
        steps=tuple((u, 4.0) for u in STEP_USERS),
        knee_users=KNEE_USERS,
        error_rate=0.002,
        seed=5,
    )
    write_run(path, spec)
    return path
