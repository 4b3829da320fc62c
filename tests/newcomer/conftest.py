"""Helpers for the newcomer tests: ``relaybench run`` as a subprocess against loopback servers."""

from __future__ import annotations

import pytest

from tests.harness import RELAYBENCH, load, records, run

__all__ = ["RELAYBENCH", "load", "records", "run"]


@pytest.fixture
def mock(start_server):
    """A fast mock (50 ms TTFT, 5 ms ITL, answers exactly max_tokens)."""
    return start_server(
        "mock_upstream", "--ttft-ms", "50", "--itl-ms", "5", "--output-from-max-tokens"
    )
