"""The mock's runtime state: config, counters, request log, admission and the request sequence."""

from __future__ import annotations

import asyncio
from typing import Any

from mock_upstream.config import MockConfig
from mock_upstream.emitter import Emitter
from mock_upstream.history import History
from mock_upstream.load import Admission
from mock_upstream.peers import Peers
from mock_upstream.stats import Stats


class MockState:
    def __init__(self, config: MockConfig) -> None:
        self.config = config
        self.stats = Stats()
        self.peers: Peers | None = None
        if config.workers > 1 and config.peer_dir is not None:
            self.peers = Peers(config.peer_dir, config.worker_index, config.workers)
            self.history = History(next_n=self.peers.counter.next)
        else:
            self.history = History()
        self.admission = Admission(config.max_concurrency, config.max_queue)
        self._seq = 0
        self._emitter: Emitter | None = None

    def emitter(self) -> Emitter:
        """The emission timer of the running event loop (made on first use, inside the loop)."""
        if self._emitter is None:
            self._emitter = Emitter(asyncio.get_running_loop())
        return self._emitter

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def request_seed(self, seq: int) -> int:
        """The seed of the seq-th request since start or reset: a pure function of both."""
        return (self.config.seed * 1_000_003 + seq) & 0xFFFF_FFFF_FFFF

    def reset(self) -> None:
        self.stats.reset()
        self.history.reset()
        self._seq = 0

    def snapshot(self) -> dict[str, object]:
        return self.stats.snapshot(
            queued=self.admission.queued, active_requests=self.admission.active
        )

    def answer(self, op: dict[str, Any]) -> dict[str, Any]:
        """This worker's part of an aggregated answer (``mock_upstream.peers``)."""
        if op["op"] == "stats":
            return {"snapshot": self.snapshot(), "lateness": self.stats.lateness.raw()}
        if op["op"] == "requests":
            entries = self.history.select(id_=op.get("id"), since=op.get("since", 0))
            return {"requests": [e.as_dict() for e in entries]}
        if op["op"] == "reset":
            self.reset()
            return {"reset": True}
        raise ValueError(f"unknown peer op {op['op']!r}")
