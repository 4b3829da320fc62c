"""The servers the scorecard owns: the mock always (unless ``--mock-url``), and with no
``--target`` the bundled relay in front of it plus two more relays for the scenarios that need
an upstream of the harness's own: one in front of a closed port (upstream down) and one in front
of the scripted wire upstream (``wire.py``).

All are subprocesses on free loopback ports (``relaybench.procs.ServerProcess``), started from
the main thread and stopped by PID, relays first, at the end, on error and on Ctrl-C.

The harness's relays run with auth off (no per-IP limit) and tighter timeouts than the relay's
defaults (first byte 5 s, idle 2 s instead of 60 s / 30 s, which suit slow reasoning models but
would make the hang and stall scenarios take a minute each). Their provider key is a random
canary: the 401/403 scenarios check it never reaches a client.
"""

from __future__ import annotations

import secrets
import socket

from relaybench.faults.scenarios import MOCK_RETRY_AFTER_S
from relaybench.faults.wire import WireUpstream
from relaybench.procs import ServerProcess

FIRST_TOKEN_TIMEOUT_MS = 5000
IDLE_TIMEOUT_MS = 2000


def closed_port() -> int:
    """A loopback port nothing listens on (bound by the OS, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Servers:
    def __init__(self) -> None:
        self.mock: ServerProcess | None = None
        self.relays: dict[str, ServerProcess] = {}
        self.wire: WireUpstream | None = None
        self.canary = "sk-canary-" + secrets.token_hex(16)

    def start_mock(self, port: int) -> str:
        args = ["--host", "127.0.0.1", "--port", str(port)]
        args += ["--retry-after-s", f"{MOCK_RETRY_AFTER_S:g}", "--seed", "1"]
        self.mock = ServerProcess("mock", ["-m", "mock_upstream", *args]).start()
        return self.mock.url

    def start_relays(self, mock_url: str) -> dict[str, str]:
        """The bundled relay (``relay``), ``down`` and ``wire``; their URLs by role."""
        self.wire = WireUpstream()
        upstreams = {
            "relay": mock_url,
            "down": f"http://127.0.0.1:{closed_port()}",
            "wire": self.wire.url,
        }
        for role, upstream in upstreams.items():
            self.relays[role] = ServerProcess(
                f"relay ({role})",
                [
                    "-m",
                    "relay",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--upstream-url",
                    upstream,
                    "--auth",
                    "off",
                    "--first-token-timeout-ms",
                    str(FIRST_TOKEN_TIMEOUT_MS),
                    "--idle-timeout-ms",
                    str(IDLE_TIMEOUT_MS),
                ],
                env={
                    "RELAY_ANON_PLAN": "unlimited",
                    "RELAY_UPSTREAM_API_KEY": self.canary,  # in the environment, not argv
                    "RELAY_LOG_LEVEL": "warning",
                },
            ).start()
        return {role: server.url for role, server in self.relays.items()}

    def stop(self) -> None:
        for server in (*self.relays.values(), self.mock):
            if server is not None:
                server.stop()
        if self.wire is not None:
            self.wire.sock.close()
