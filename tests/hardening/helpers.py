"""Shared by the hardening tests: run ``relaybench`` as a subprocess and read a run folder."""

from __future__ import annotations

from tests.harness import RELAYBENCH, mock_stats, records
from tests.harness import relaybench as run

__all__ = ["RELAYBENCH", "mock_stats", "records", "run"]
