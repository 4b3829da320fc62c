"""The per-request log behind ``GET /mock/requests``: a bounded ring of recent requests.

One ``Entry`` per completion request, opened on arrival and updated in place while the request
runs, so a reader sees requests in progress too. Times are Unix ns (``time.time_ns()``, the
clock of ``x_mock_emitted_ns``). ``end`` is one of ``ENDS``:

    in_progress   not over yet (``ended_ns`` is null)
    completed     answered in full
    cancelled     the client went away before the end (``ended_ns``: when the mock noticed)
    faulted       ended by an injected fault (a status answer, a cut, no-done, hang)
    error         refused (400, 413, queue full) or cut by the mock's shutdown
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator

ENDS = ("in_progress", "completed", "cancelled", "faulted", "error")
DEFAULT_SIZE = 10_000


class Entry:
    __slots__ = (
        "arrived_ns",
        "bytes_sent",
        "chunks_sent",
        "end",
        "ended_ns",
        "fault",
        "first_byte_ns",
        "id",
        "n",
        "request_id",
        "status",
        "stream",
    )

    def __init__(self, n: int, arrived_ns: int, request_id: str | None) -> None:
        self.n = n
        self.arrived_ns = arrived_ns
        self.request_id = request_id
        self.id: str | None = None
        self.stream = False
        self.fault: str | None = None
        self.status = 0  # until a status line is sent
        self.first_byte_ns: int | None = None
        self.ended_ns: int | None = None
        self.chunks_sent = 0  # content chunks
        self.bytes_sent = 0  # response body bytes
        self.end = "in_progress"

    def wrote(self, nbytes: int, ns: int) -> None:
        """Body bytes written at ``ns`` (the first write sets ``first_byte_ns``)."""
        if self.first_byte_ns is None:
            self.first_byte_ns = ns
        self.bytes_sent += nbytes

    def finish(self, end: str) -> None:
        if self.end == "in_progress":
            self.end = end
            self.ended_ns = time.time_ns()

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in _FIELDS}


_FIELDS = (
    "n",
    "id",
    "request_id",
    "stream",
    "fault",
    "status",
    "arrived_ns",
    "first_byte_ns",
    "ended_ns",
    "chunks_sent",
    "bytes_sent",
    "end",
)


class History:
    """The last ``size`` requests in arrival order; ``n`` counts from 1 since start or reset.

    ``next_n``: where ``n`` comes from when several workers share one count (their owner resets
    it); by default this log counts by itself.
    """

    def __init__(self, size: int = DEFAULT_SIZE, next_n: Callable[[], int] | None = None) -> None:
        self.entries: deque[Entry] = deque(maxlen=size)
        self._n = 0
        self._next_n = next_n or self._count

    def _count(self) -> int:
        self._n += 1
        return self._n

    def open(self, arrived_ns: int, request_id: str | None) -> Entry:
        entry = Entry(self._next_n(), arrived_ns, request_id)
        self.entries.append(entry)
        return entry

    def reset(self) -> None:
        self.entries.clear()
        self._n = 0

    def select(self, *, id_: str | None = None, since: int = 0) -> Iterator[Entry]:
        for entry in self.entries:
            if entry.n > since and (id_ is None or entry.id == id_):
                yield entry
