"""Relay test fixtures: the real mock upstream, keys files, relays, a private redis-server,
and a tiny raw-socket upstream for byte-exact checks. Everything is stopped at teardown."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from relay.keys import create_key
from relaybench.procs import ServerProcess

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello there"}]}


def chat(stream: bool = True, **extra: object) -> bytes:
    return orjson.dumps({**CHAT, "stream": stream, **extra})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bare_relay(
    start: Callable[..., ServerProcess], upstream_url: str, env: dict[str, str] | None = None
) -> ServerProcess:
    """A relay with auth off and no per-IP limit, so each test sees only the setting it names."""
    return start(
        "relay",
        "--upstream-url",
        upstream_url,
        "--auth",
        "off",
        env={"RELAY_ANON_PLAN": "unlimited", **(env or {})},
    )


def sse_data(body: bytes) -> list[str]:
    """The data payloads of an SSE body, via the project's decoder."""
    from relaybench.sse import SSEDecoder

    return [event.data for event in SSEDecoder().feed(body)]


@pytest.fixture(scope="module")
def start_shared() -> Iterator[Callable[..., ServerProcess]]:
    """Like ``start_server`` but the servers live for the whole test module."""
    started: list[ServerProcess] = []

    def start(module: str, *args: str, env: dict[str, str] | None = None) -> ServerProcess:
        argv = ["-m", module, "--host", "127.0.0.1", "--port", "0", *args]
        server = ServerProcess(module, argv, env={"RELAY_LOG_LEVEL": "warning", **(env or {})})
        started.append(server)
        return server.start()

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture(scope="module")
def shared_mock(start_shared: Callable[..., ServerProcess]) -> ServerProcess:
    return start_shared("mock_upstream", "--ttft-ms", "20", "--itl-ms", "5", "--output-tokens", "8")


@pytest.fixture
def mock(shared_mock: ServerProcess) -> ServerProcess:
    """The module's mock, its counters reset (tests in a module run one after another)."""
    httpx.post(shared_mock.url + "/mock/reset").raise_for_status()
    return shared_mock


def mock_stats(mock: ServerProcess) -> dict:
    return httpx.get(mock.url + "/mock/stats").json()


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    return tmp_path / "keys.json"


@pytest.fixture
def make_key(keys_file: Path) -> Callable[..., str]:
    """``make_key("basic")`` or ``make_key("tiny", rpm=5, max_streams=0)`` (defines the plan)."""

    def make(plan: str = "bench", rpm: int | None = None, max_streams: int = 0) -> str:
        plans = None
        if rpm is not None:
            plans = {plan: {"rpm": rpm, "max_streams": max_streams}}
        elif plan == "bench":
            plans = {"bench": {"rpm": 1_000_000_000, "max_streams": 100_000}}
        return create_key(keys_file, plan, plans)

    return make


@pytest.fixture
def relay(
    start_server: Callable[..., ServerProcess], mock: ServerProcess, keys_file: Path
) -> Callable[..., ServerProcess]:
    """Start a relay on the mock: ``relay(*flags, env={...}, upstream=URL, keys=True)``."""

    def start(
        *flags: str, env: dict[str, str] | None = None, upstream: str | None = None, keys=True
    ) -> ServerProcess:
        args = ["--upstream-url", upstream or mock.url, *flags]
        if keys and "--auth" not in flags:
            if not keys_file.exists():
                create_key(keys_file, "basic")
            args += ["--keys-file", str(keys_file)]
        return start_server("relay", *args, env={"RELAY_LOG_LEVEL": "warning", **(env or {})})

    return start


class RawUpstream:
    """A one-thread HTTP/1.1 server on a raw socket that answers every request with ``pieces``,
    each written separately (with a pause) so the relay receives them as separate chunks.
    It records each request's body."""

    def __init__(self, pieces: list[bytes], pause_s: float = 0.02) -> None:
        self.pieces = pieces
        self.pause_s = pause_s
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        while len(body) < length:
            body += conn.recv(65536)
        self.requests.append(body)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        )
        for piece in self.pieces:
            conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            time.sleep(self.pause_s)
        conn.sendall(b"0\r\n\r\n")

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(2)


@pytest.fixture
def raw_upstream() -> Iterator[Callable[..., RawUpstream]]:
    made: list[RawUpstream] = []

    def make(pieces: list[bytes], pause_s: float = 0.02) -> RawUpstream:
        server = RawUpstream(pieces, pause_s)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


def metrics(server: ServerProcess) -> dict[tuple[str, frozenset], float]:
    """Every sample on /metrics, parsed by prometheus_client: (name, labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    response = httpx.get(server.url + "/metrics")
    response.raise_for_status()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    """The value of one sample on /metrics; 0 if absent."""
    return metrics(server).get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def shared_relay(
    start_shared: Callable[..., ServerProcess], shared_mock: ServerProcess, tmp_path_factory
) -> tuple[ServerProcess, str]:
    """A module-wide relay on the module's mock, and a bench-plan key for it."""
    keys_file = tmp_path_factory.mktemp("shared") / "keys.json"
    key = create_key(keys_file, "bench", {"bench": {"rpm": 1_000_000_000, "max_streams": 100_000}})
    server = start_shared("relay", "--upstream-url", shared_mock.url, "--keys-file", str(keys_file))
    return server, key


@pytest.fixture
def kit() -> object:
    """The helpers above, as a fixture (module-scoped fixtures import them: ``from .conftest``)."""
    import types

    return types.SimpleNamespace(
        chat=chat,
        sse_data=sse_data,
        mock_stats=mock_stats,
        free_port=free_port,
        metric=metric,
        metrics=metrics,
        CHAT=CHAT,
    )
