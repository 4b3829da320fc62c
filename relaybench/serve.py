"""Server start-up shared by the mock and the relay: bind, serve under uvicorn, announce, stop.

``serve(app, ServeOptions(...))`` binds the socket itself (so port 0 works and the real port is
known), runs the ASGI app under uvicorn on uvloop with httptools, prints exactly one stdout line
``listening on http://H:P`` once uvicorn accepts connections, and ``gc.freeze()``-s what start-up
built. SIGINT/SIGTERM stop accepting, give open streams ``grace_s`` to finish (uvicorn's graceful
shutdown), and ``serve`` returns 0 — the process exits 0, not by the signal.

``workers=N`` runs N processes on one port: this one binds it with SO_REUSEPORT (port 0 resolved
first), starts N-1 copies (``worker_argv(port)``, owned: they die with us), and passes its stop
signal on; the kernel spreads connections over them. A copy runs ``serve`` with ``workers=1``
and ``reuse_port=True`` on the given port. A copy that dies is logged, reported to the app
(``Service.on_worker_exit``: the relay drops its live gauges) and started again with the same
arguments; a replacement that dies within ``MIN_WORKER_LIFE_S`` is not, so a crash at start-up
cannot loop.

With ``factory=True``, ``app`` is called inside the running event loop and may return a
``Service``: the app plus a hook for the first stop signal and an async close after the server
stopped (the relay drains its streams that way and closes its upstream clients).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

import uvicorn
import uvloop

from relaybench.errors import RelaybenchError, UsageError
from relaybench.procs import die_with_parent, owned_child, stop_process

ASGIApp = Callable[..., Awaitable[None]]
WORKER_START_TIMEOUT_S = 20.0
WORKER_POLL_S = 0.5  # how often the first process looks for a copy that died
MIN_WORKER_LIFE_S = 5.0  # a replacement that dies younger is not started again


@dataclass(frozen=True)
class Service:
    """What an app factory may return: the ASGI app and its lifecycle hooks."""

    app: ASGIApp
    on_stop: Callable[[], None] | None = None  # first stop signal, called in the event loop
    aclose: Callable[[], Awaitable[None]] | None = None  # after uvicorn has stopped
    on_worker_exit: Callable[[int], None] | None = None  # a copy's PID, after it died


@dataclass(frozen=True)
class ServeOptions:
    """How to listen and serve. Durations in seconds."""

    host: str = "127.0.0.1"
    port: int = 0  # 0: the OS chooses
    workers: int = 1  # processes sharing the port (SO_REUSEPORT)
    reuse_port: bool = False  # SO_REUSEPORT even with one worker (several servers on one port)
    grace_s: float = 3.0  # uvicorn's timeout_graceful_shutdown
    # The arguments after the interpreter that start one more worker on the given port (which
    # must then run serve with workers=1, reuse_port=True); needed when workers > 1.
    worker_argv: Callable[[int], Sequence[str]] | None = None
    http_protocol: type[asyncio.Protocol] | None = None  # None: uvicorn's httptools protocol
    timeout_keep_alive_s: float = 5.0
    proxy_headers: bool = True
    tcp_nodelay: bool = False  # set on the listening socket; accepted sockets inherit it
    backlog: int = 4096
    log_level: str = "warning"
    name: str = "server"  # in error messages


def bind(host: str, port: int, *, reuse_port: bool = False, nodelay: bool = False) -> socket.socket:
    """A bound, inheritable TCP socket; an address that cannot be used is a UsageError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


class _Server(uvicorn.Server):
    """uvicorn's server, without re-raising the stop signal after shutting down.

    uvicorn records a captured SIGINT/SIGTERM and raises it again once it has stopped (the
    process would then die by the signal instead of exiting 0); this ``handle_exit`` does what
    uvicorn's does minus the recording, and tells the workers and the app's hook.
    """

    def __init__(self, config: uvicorn.Config, on_signal: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_signal = on_signal

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True
        self._on_signal()


def serve(app: Any, options: ServeOptions, *, factory: bool = False) -> int:
    """Serve ``app`` (or ``app()`` with ``factory=True``) until SIGINT/SIGTERM; return 0."""
    die_with_parent()
    if options.workers < 1:
        raise UsageError(f"{options.name}: workers must be at least 1, got {options.workers}")
    if options.workers > 1 and options.worker_argv is None:
        raise ValueError("ServeOptions.worker_argv is needed for workers > 1")
    sock = bind(
        options.host,
        options.port,
        reuse_port=options.reuse_port or options.workers > 1,
        nodelay=options.tcp_nodelay,
    )
    workers = _Workers(options)
    try:
        if options.worker_argv is not None:
            workers.start(
                [*options.worker_argv(sock.getsockname()[1])] for _ in range(1, options.workers)
            )
        uvloop.run(_serve(app, factory, options, sock, workers))
    finally:
        workers.stop(options.grace_s + 3.0)
        sock.close()
    return 0


async def _serve(
    app: Any,
    factory: bool,
    options: ServeOptions,
    sock: socket.socket,
    workers: _Workers,
) -> None:
    built = app() if factory else app
    service = built if isinstance(built, Service) else Service(built)
    loop = asyncio.get_running_loop()
    stopping = False

    def on_signal() -> None:
        nonlocal stopping
        workers.signal_stop()  # they drain in parallel with us
        if not stopping and service.on_stop is not None:
            loop.call_soon_threadsafe(service.on_stop)
        stopping = True

    config = uvicorn.Config(
        service.app,
        http=options.http_protocol or "httptools",
        loop="none",
        lifespan="off",
        access_log=False,
        proxy_headers=options.proxy_headers,
        log_level=options.log_level,
        timeout_keep_alive=options.timeout_keep_alive_s,
        timeout_graceful_shutdown=options.grace_s,
        backlog=options.backlog,
    )
    server = _Server(config, on_signal)
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if serving.done():
                await serving  # start-up failed: raise its error
                return
            await asyncio.sleep(0.005)
        # Everything built so far lives as long as the process: keep it out of the collector's
        # full passes (a pause every open stream would otherwise feel as lateness).
        gc.freeze()
        print(f"listening on {url_of(sock)}", flush=True)
        watching = asyncio.ensure_future(workers.watch(service.on_worker_exit))
        try:
            await serving
        finally:
            watching.cancel()
    finally:
        if service.aclose is not None:
            await service.aclose()


@dataclass
class _Slot:
    argv: list[str]
    proc: subprocess.Popen[bytes]
    born: float | None = None  # monotonic, for a replacement (the first ones were seen ready)
    ended: bool = False  # died and was not started again


class _Workers:
    """The N-1 copies: started, told to stop, and each replaced when it dies on its own."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.log = logging.getLogger(f"{options.name}.workers")
        self.slots: list[_Slot] = []
        self.stopping = False

    def start(self, argvs: Iterable[list[str]]) -> None:
        """Start each copy and wait for its ``listening on`` line (an error if one fails)."""
        for argv in argvs:
            self.slots.append(_Slot(argv, _start_worker(self.options, argv)))

    async def watch(self, on_exit: Callable[[int], None] | None) -> None:
        """Until cancelled: a copy that died is reported and started again (see the top)."""
        while self.slots:
            await asyncio.sleep(WORKER_POLL_S)
            for slot in self.slots:
                if not (slot.ended or self.stopping) and slot.proc.poll() is not None:
                    self._replace(slot, on_exit)

    def _replace(self, slot: _Slot, on_exit: Callable[[int], None] | None) -> None:
        dead = slot.proc
        if dead.stdout is not None:
            dead.stdout.close()
        if on_exit is not None:
            on_exit(dead.pid)
        name = f"{self.options.name} worker (pid {dead.pid})"
        lived = None if slot.born is None else time.monotonic() - slot.born
        if lived is not None and lived < MIN_WORKER_LIFE_S:
            slot.ended = True
            self.log.error(
                f"{name} exited with code {dead.returncode} after {lived:.1f} s; not started again"
            )
            return
        slot.proc, slot.born = _spawn_worker(slot.argv, stdout=subprocess.DEVNULL), time.monotonic()
        self.log.warning(
            f"{name} exited with code {dead.returncode}; started pid {slot.proc.pid} in its place"
        )

    def signal_stop(self) -> None:
        self.stopping = True
        for slot in self.slots:
            if slot.proc.poll() is None:
                os.kill(slot.proc.pid, signal.SIGTERM)

    def stop(self, timeout: float) -> None:
        self.stopping = True
        for slot in self.slots:
            stop_process(slot.proc, timeout)


def _spawn_worker(argv: list[str], stdout: int) -> subprocess.Popen[bytes]:
    """One more copy on our port; its logs go to our stderr."""
    return subprocess.Popen(
        [sys.executable, *argv],
        stdout=stdout,
        stdin=subprocess.DEVNULL,
        **owned_child(),  # a Ctrl-C reaches us; we pass the stop on ourselves
    )


def _start_worker(options: ServeOptions, argv: list[str]) -> subprocess.Popen[bytes]:
    """``_spawn_worker``, then wait for its ready line."""
    proc = _spawn_worker(argv, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    deadline = time.monotonic() + WORKER_START_TIMEOUT_S
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if selector.select(deadline - time.monotonic()):
                if b"listening on" in proc.stdout.readline():
                    return proc
                if proc.poll() is not None:
                    break
    stop_process(proc, 0.0)
    raise RelaybenchError(f"{options.name} worker (pid {proc.pid}) did not start")
