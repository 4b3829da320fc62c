"""The workers of ``--workers N``: one view of their counters and request logs.

The kernel spreads connections over N processes on one port (SO_REUSEPORT), so each worker
sees only its own requests. Each one answers for itself on a private unix socket in a
directory the first process made (``<dir>/<index>.sock``: one JSON line in, one out), and the
worker that gets ``GET /mock/stats``, ``GET /mock/requests`` or ``POST /mock/reset`` asks every
other one and answers for all: counters summed, lateness histograms merged, logs merged in
arrival order. The log's ``n`` comes from one counter shared through a file in that directory
(``fcntl`` lock, one per request), so it is unique and in arrival order across workers.
"""

from __future__ import annotations

import asyncio
import fcntl
import mmap
import os
import struct
from collections import Counter
from typing import Any

import orjson

from mock_upstream.history import DEFAULT_SIZE
from mock_upstream.stats import Lateness

ANSWER_TIMEOUT_S = 2.0
ANSWER_LIMIT = 64 << 20  # one answer line: a full request log is a few MiB
_SUMMED = (
    "requests",
    "active_streams",
    "active_requests",
    "queued",
    "completed",
    "cancelled",
    "rejected",
    "bad_requests",
    "faulted",
    "faults",
    "chunks",
    "direct_writes",
)


class PeerError(Exception):
    """A worker did not answer for itself."""


class SharedCounter:
    """A counter shared by the workers: an 8-byte file, mapped, incremented under ``flock``."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self.fd).st_size < 8:
            os.ftruncate(self.fd, 8)
        self.map = mmap.mmap(self.fd, 8)

    def next(self) -> int:
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            value = struct.unpack_from("q", self.map)[0] + 1
            struct.pack_into("q", self.map, 0, value)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        return value

    def reset(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            struct.pack_into("q", self.map, 0, 0)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)


class Peers:
    """This worker's place among ``count`` workers sharing ``directory``."""

    def __init__(self, directory: str, index: int, count: int) -> None:
        self.directory = directory
        self.index = index
        self.count = count
        self.counter = SharedCounter(os.path.join(directory, "n"))

    def path(self, index: int) -> str:
        return os.path.join(self.directory, f"{index}.sock")

    async def listen(self, answer: Any) -> asyncio.AbstractServer:
        """Serve ``answer(op) -> dict`` for the other workers on this worker's socket."""

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                op = orjson.loads(await reader.readline())
                writer.write(orjson.dumps(answer(op)) + b"\n")
                await writer.drain()
            finally:
                writer.close()

        return await asyncio.start_unix_server(handle, self.path(self.index))

    async def ask_all(self, op: dict[str, Any], own: dict[str, Any]) -> list[dict[str, Any]]:
        """Every worker's answer to ``op``: ``own`` for this one, the others over their sockets."""
        others = [i for i in range(self.count) if i != self.index]
        answers = await asyncio.gather(*(self._ask(i, op) for i in others))
        return [own, *answers]

    async def _ask(self, index: int, op: dict[str, Any]) -> dict[str, Any]:
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                reader, writer = await asyncio.open_unix_connection(
                    self.path(index), limit=ANSWER_LIMIT
                )
                try:
                    writer.write(orjson.dumps(op) + b"\n")
                    line = await reader.readline()
                finally:
                    writer.close()
            return orjson.loads(line)
        except (OSError, TimeoutError, ValueError) as exc:  # JSONDecodeError is a ValueError
            raise PeerError(f"mock worker {index} of {self.count} did not answer: {exc}") from None


def merge_stats(answers: list[dict[str, Any]]) -> dict[str, Any]:
    """One ``/mock/stats`` for all workers: counters summed, lateness from the merged bins."""
    merged: dict[str, Any] = {name: sum(a["snapshot"][name] for a in answers) for name in _SUMMED}
    kinds: Counter[str] = Counter()
    lateness = Lateness()
    for a in answers:
        kinds.update(a["snapshot"]["faults_by_kind"])
        lateness.merge(a["lateness"])
    merged["faults_by_kind"] = dict(kinds)
    merged["lateness_ms"] = lateness.summary_ms()
    merged["since_reset_s"] = max(a["snapshot"]["since_reset_s"] for a in answers)
    merged["workers"] = len(answers)
    return merged


def merge_requests(answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every worker's log entries in arrival order (by the shared ``n``), the last 10,000."""
    entries = sorted((e for a in answers for e in a["requests"]), key=lambda e: e["n"])
    return entries[-DEFAULT_SIZE:]
