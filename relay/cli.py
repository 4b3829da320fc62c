"""``relaybench relay`` / ``python -m relay``: run the relay under uvicorn (uvloop + httptools).

We bind the socket ourselves (so port 0 works and the real port is known), print exactly one
``listening on http://H:P`` line when uvicorn is serving, and on SIGTERM/SIGINT stop accepting,
give open streams ``--grace-ms`` to finish, then end the rest with the SSE error line; exit 0.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Sequence
from types import FrameType

import uvicorn
import uvloop

from relay.app import Relay, build_app
from relay.config import RelayConfig, parse_config
from relay.logs import setup_logging


class RelayServer(uvicorn.Server):
    """uvicorn's server, telling the relay to drain on the first signal.

    uvicorn re-raises captured signals after shutting down (the process would then die by
    SIGTERM instead of exiting 0), so the signal is handled here without being recorded.
    """

    def __init__(self, config: uvicorn.Config, relay: Relay, loop: asyncio.AbstractEventLoop):
        super().__init__(config)
        self.relay = relay
        self.loop = loop

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True
        self.loop.call_soon_threadsafe(self.relay.begin_drain)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


async def serve(config: RelayConfig) -> None:
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
    sock = _bind(config.host, config.port)
    server = RelayServer(uv_config, relay, asyncio.get_running_loop())
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


def main(argv: Sequence[str]) -> int:
    config = parse_config(argv, os.environ)
    setup_logging(config.log_level)
    uvloop.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
