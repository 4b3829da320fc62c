"""The servers ``relaybench run`` owns when no ``--target`` is given: the mock and the relay.

Both are subprocesses (``relaybench.procs.ServerProcess``) on free loopback ports; each is
ready once it printed ``listening on`` and answers ``GET /health``. They are stopped by PID,
relay first, at the end, on error and on Ctrl-C.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from relaybench import credentials
from relaybench.errors import RelaybenchError, UsageError
from relaybench.procs import ServerProcess
from relaybench.run import progress

BENCH_PLAN = "bench"
BENCH_PLANS = {BENCH_PLAN: {"rpm": 1_000_000_000, "max_streams": 100_000}}


@dataclass(frozen=True)
class MockSettings:
    """The embedded mock. By default it models a real upstream (README, "The mock's load
    model"): at most ``max_concurrency`` generations at once, the rest wait in a FIFO queue (the
    wait adds to TTFT), and each one's ITL grows by ``slowdown_per_stream`` per active stream
    beyond ``slowdown_after`` (a batching server). ``max_concurrency=0`` and
    ``slowdown_per_stream=0`` give the ideal upstream (the relay benches use it)."""

    ttft_ms: float = 500.0
    itl_ms: float = 25.0
    output_tokens: int = 150  # when a request sets no max_tokens
    seed: int = 1
    from_max_tokens: bool = True  # answer exactly max_tokens: the seeded length distribution
    max_concurrency: int = 48  # 0: unlimited
    max_queue: int | None = None  # None: unbounded; beyond it, 429
    slowdown_per_stream: float = 0.01
    slowdown_after: int = 8

    def args(self) -> list[str]:
        model = [
            *("--max-concurrency", str(self.max_concurrency)),
            *("--slowdown-per-stream", f"{self.slowdown_per_stream:g}"),
            *("--slowdown-after", str(self.slowdown_after)),
            *(["--max-queue", str(self.max_queue)] if self.max_queue is not None else []),
        ]
        return [
            *model,
            "--ttft-ms",
            f"{self.ttft_ms:g}",
            "--itl-ms",
            f"{self.itl_ms:g}",
            "--output-tokens",
            str(self.output_tokens),
            "--seed",
            str(self.seed),
            *(["--output-from-max-tokens"] if self.from_max_tokens else []),
        ]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def http_json(url: str, *, method: str = "GET", timeout: float = 5.0) -> Any:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        body = resp.read()
    return json.loads(body) if body else None


def wait_healthy(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            http_json(url.rstrip("/") + "/health", timeout=2.0)
            return
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = exc
            time.sleep(0.1)
    raise RelaybenchError(f"{url}/health did not answer within {timeout:g}s: {last}")


def check_reachable(name: str, url: str, timeout: float = 3.0) -> None:
    """Fail before any load when a target cannot even be connected to."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        shown = credentials.redact_url(url)
        raise UsageError(f"target {name} at {shown} is unreachable: {exc}") from exc


class BenchServers:
    """Starts the mock and the relay, and a bench API key for the relay."""

    def __init__(self, mock: MockSettings, relay_args: Sequence[str] = ()) -> None:
        self.settings = mock
        self.relay_args = list(relay_args)  # e.g. --workers 2 --redis-url URL
        self.mock: ServerProcess | None = None
        self.relay: ServerProcess | None = None
        self.api_key = ""
        self._tmp = credentials.private_tempdir("keys")

    def start(self) -> None:
        base = ["--host", "127.0.0.1", "--port", "0"]
        self.mock = ServerProcess("mock", ["-m", "mock_upstream", *base, *self.settings.args()])
        progress.step("starting the mock upstream ...")
        self.mock.start()
        wait_healthy(self.mock.url)
        progress.step(f"  mock ready: {self.mock.url}")
        from relay.keys import create_key  # the relay's own key format, imported when needed

        keys_file = Path(self._tmp.name) / "keys.json"
        self.api_key = create_key(keys_file, BENCH_PLAN, BENCH_PLANS)
        relay_args = ["--upstream-url", self.mock.url, "--keys-file", str(keys_file)]
        relay_args += self.relay_args
        self.relay = ServerProcess("relay", ["-m", "relay", *base, *relay_args])
        progress.step("starting the relay ...")
        self.relay.start()
        wait_healthy(self.relay.url)
        progress.step(f"  relay ready: {self.relay.url}")

    def stop(self) -> None:
        for server in (self.relay, self.mock):
            if server is not None:
                server.stop()
        self._tmp.cleanup()
