"""``relaybench relay`` / ``python -m relay``: run the relay under uvicorn (uvloop + httptools).

We bind the socket ourselves (so port 0 works and the real port is known), print exactly one
``listening on http://H:P`` line when uvicorn is serving, and on SIGTERM/SIGINT stop accepting,
give open streams ``--grace-ms`` to finish, then end the rest with the SSE error line; exit 0.

``--workers N`` runs N processes on one port: this one binds it with SO_REUSEPORT (port 0
resolved first), starts N-1 copies of itself on the same port, and passes its stop signal on.
The kernel spreads connections over them. Use ``--redis-url`` with several workers so they
share rate limits; metrics and the concurrent-streams cap stay per process.
"""

from __future__ import annotations

import asyncio
import gc
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

import uvicorn
import uvloop

from relay.app import Relay, build_app, load_keys
from relay.config import RelayConfig, parse_config
from relay.logs import setup_logging
from relaybench.errors import RelaybenchError


class RelayServer(uvicorn.Server):
    """uvicorn's server, telling the relay to drain on the first signal.

    uvicorn re-raises captured signals after shutting down (the process would then die by
    SIGTERM instead of exiting 0), so the signal is handled here without being recorded.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        relay: Relay,
        loop: asyncio.AbstractEventLoop,
        workers: list[subprocess.Popen[bytes]],
    ):
        super().__init__(config)
        self.relay = relay
        self.loop = loop
        self.workers = workers

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True
        for worker in self.workers:  # they drain in parallel with us
            if worker.poll() is None:
                os.kill(worker.pid, signal.SIGTERM)
        self.loop.call_soon_threadsafe(self.relay.begin_drain)


def _bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


async def serve(
    config: RelayConfig, sock: socket.socket, workers: list[subprocess.Popen[bytes]]
) -> None:
    relay = Relay(config)
    app = build_app(relay)
    uv_config = uvicorn.Config(
        app,
        loop="none",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=30,
        timeout_graceful_shutdown=config.grace_s + 1.0,
        backlog=4096,
    )
    server = RelayServer(uv_config, relay, asyncio.get_running_loop(), workers)
    # Everything built so far lives as long as the process: keep the cyclic GC off it, and let
    # it run less often (requests allocate many short-lived objects, few cycles).
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if serving.done():
                await serving  # startup failed: raise its error
                return
            await asyncio.sleep(0.01)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"listening on http://{shown}:{port}", flush=True)
        await serving
    finally:
        await relay.close()


def _start_worker(argv: Sequence[str], port: int, timeout: float = 20.0) -> subprocess.Popen[bytes]:
    """A copy of this relay on the same port; its logs go to our stderr, we read its ready line."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "relay",
            *argv,
            "--port",
            str(port),
            "--workers",
            "1",
            "--reuse-port",
            "on",
        ],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C reaches us; we pass the stop on ourselves
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if selector.select(deadline - time.monotonic()):
                if b"listening on" in proc.stdout.readline():
                    return proc
                if proc.poll() is not None:
                    break
    _stop_worker(proc, 0.0)
    raise RelaybenchError(f"relay worker (pid {proc.pid}) did not start")


def _stop_worker(proc: subprocess.Popen[bytes], timeout: float) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def main(argv: Sequence[str]) -> int:
    config = parse_config(argv, os.environ)
    setup_logging(config.log_level)
    load_keys(config)  # refuse a configuration that cannot work before binding anything
    sock = _bind(config.host, config.port, config.reuse_port or config.workers > 1)
    port = sock.getsockname()[1]
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(1, config.workers):
            workers.append(_start_worker(argv, port))
        uvloop.run(serve(config, sock, workers))
    finally:
        for worker in workers:
            _stop_worker(worker, config.grace_s + 3.0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
