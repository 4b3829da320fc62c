"""The mock's typed configuration, built once from the command line and passed in."""

from __future__ import annotations

from dataclasses import dataclass, field

from mock_upstream.faults import FaultRate
from mock_upstream.latency import Distribution
from relaybench.guard import GuardLimits

MAX_BODY_BYTES = 1 << 20  # larger request bodies get 413
MAX_DRAIN_BYTES = 8 << 20  # refused bodies up to this are read to the end so the 413 is readable


@dataclass(frozen=True)
class MockConfig:
    host: str = "127.0.0.1"
    port: int = 0
    model: str = "mock-gpt"
    seed: int = 0
    ttft_ms: Distribution = field(default_factory=lambda: Distribution("constant", 200.0))
    itl_ms: Distribution = field(default_factory=lambda: Distribution("constant", 20.0))
    output_tokens: Distribution = field(default_factory=lambda: Distribution("constant", 100.0))
    use_max_tokens: bool = False  # output length = max_tokens when the request gives one
    prefill_ms_per_token: float = 0.0
    tokens_per_chunk: int = 1
    max_concurrency: int = 0  # 0: unlimited
    max_queue: int | None = None  # None: unbounded
    retry_after_s: int = 1
    slowdown_per_stream: float = 0.0
    slowdown_after: int = 0
    crlf: bool = False
    keepalive_ms: float = 0.0  # 0: no keep-alive comments
    fault_rates: tuple[FaultRate, ...] = ()
    shutdown_grace_s: float = 3.0
    limits: GuardLimits = field(default_factory=GuardLimits)  # relaybench.guard: slow clients
    workers: int = 1  # processes sharing the port
    peer_dir: str | None = (
        None  # with workers > 1: where they find each other (mock_upstream.peers)
    )
    worker_index: int = 0
