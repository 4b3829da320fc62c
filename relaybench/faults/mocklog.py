"""The mock's per-request log (``GET /mock/requests``), as the scorecard reads it.

Each entry is one request the mock received: its tag ``id``, ``arrived_ns`` / ``first_byte_ns``
/ ``ended_ns`` (Unix ns, the clock of ``x_mock_emitted_ns``), ``chunks_sent``, ``bytes_sent`` and
how it ``end``-ed (``in_progress``, ``completed``, ``cancelled``, ``faulted``, ``error``). The log
is the ground truth of what reached the upstream: how many attempts a relay made, whether it
re-sent a request after bytes had gone out, and when it let go of a request its client left.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from relaybench.errors import RelaybenchError
from relaybench.faults.client import tls_context


class MockLog:
    def __init__(self, mock_url: str) -> None:
        self.base = mock_url.rstrip("/")

    async def entries(self, request_id: str) -> list[dict[str, Any]]:
        """Every logged request tagged ``request_id``, in arrival order."""
        async with httpx.AsyncClient(timeout=5.0, verify=tls_context()) as client:
            response = await client.get(f"{self.base}/mock/requests", params={"id": request_id})
        if response.status_code != 200:
            raise RelaybenchError(
                f"the mock at {self.base} has no request log (GET /mock/requests answered "
                f"{response.status_code}); it needs a mock_upstream with the request log"
            )
        found = response.json().get("requests", [])
        return sorted(found, key=lambda e: (e.get("arrived_ns") or 0, e.get("n") or 0))

    async def settled(self, request_id: str, within_s: float) -> list[dict[str, Any]]:
        """The entries once none is ``in_progress`` (or as they are after ``within_s``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            found = await self.entries(request_id)
            if found and all(e.get("end") != "in_progress" for e in found):
                return found
            if loop.time() >= deadline:
                return found
            await asyncio.sleep(0.02)

    async def arrived(self, request_id: str, within_s: float) -> bool:
        """Wait until the mock has logged a request tagged ``request_id``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while loop.time() < deadline:
            if await self.entries(request_id):
                return True
            await asyncio.sleep(0.02)
        return False


def resent_after_bytes(found: list[dict[str, Any]]) -> int:
    """Attempts that arrived after an earlier attempt had already sent body bytes."""
    count = 0
    for i, later in enumerate(found[1:], start=1):
        arrived = later.get("arrived_ns") or 0
        if any(
            (e.get("first_byte_ns") or arrived + 1) < arrived and (e.get("bytes_sent") or 0) > 0
            for e in found[:i]
        ):
            count += 1
    return count
