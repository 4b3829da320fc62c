"""Both servers cap their open connections: beyond the cap, a new connection gets a 503 at once.

Real servers on 127.0.0.1 with a cap of 20 and a header timeout far longer than the test, so an
idle connection the server admitted stays open and silent, and any answer an idle socket gets
is the cap's. What is asserted: which sockets were answered and how, that a stream opened before
the flood runs to its end past the refusals (the mock's emission stamps), that the process's
descriptors stay bounded by the cap whatever is opened, and that a client is served again once
idle connections close. No wall-clock window: waits are bounded only so a bug fails the test.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from relaybench import guard

from .test_guard_hooks import FakeTransport, _app, in_loop

CAP = 20
WAIT_S = 20.0  # a socket the server never answers fails the test after this
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}


@pytest.fixture(params=["mock", "relay"])
def server(request, start_server):
    """(url, pid) of a server capped at CAP connections."""
    cap = ["--max-connections", str(CAP)]
    mock_args = ["--ttft-ms", "10", "--itl-ms", "1", "--header-timeout-s", "120"]
    mock = start_server("mock_upstream", *mock_args, *(cap if request.param == "mock" else []))
    if request.param == "mock":
        return mock.url, mock.pid
    relay_args = ["--upstream-url", mock.url, "--auth", "off", "--header-timeout-ms", "120000"]
    relay = start_server("relay", *relay_args, *cap)
    return relay.url, relay.pid


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=WAIT_S)


def _readable(socks: list[socket.socket], want: int) -> list[socket.socket]:
    """Wait until ``want`` of ``socks`` have something to read (bounded); return those."""
    deadline = time.monotonic() + WAIT_S
    ready: list[socket.socket] = []
    while len(ready) < want and time.monotonic() < deadline:
        ready = select.select(socks, [], [], 0.05)[0]
    return ready


def _refused(sock: socket.socket) -> bool:
    """Read the answer to the end: the cap's 503 JSON error, then the server's close."""
    data = bytearray()
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        return False
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    error = json.loads(body)["error"]
    return (
        head.startswith(b"HTTP/1.1 503 ")
        and b"retry-after: 1" in head
        and error["code"] == 503
        and "connection limit" in error["message"]
    )


def _sse_stamps(lines: list[str]) -> list[int]:
    out = []
    for line in lines:
        if line.startswith("data: {"):
            out.append(json.loads(line[6:])["x_mock_emitted_ns"])
    return out


def test_over_the_cap_a_connection_gets_503_at_once_and_fds_stay_bounded(server) -> None:
    url, pid = server
    proc = psutil.Process(pid)
    base_fds = proc.num_fds()
    idle: list[socket.socket] = []
    with httpx.Client(timeout=WAIT_S) as client:
        try:
            # a stream opened before the flood: one of the CAP connections
            headers = {"X-Mock-ITL-Ms": "20", "X-Mock-Output-Tokens": "150"}
            stream_body = {**BODY, "stream": True, "max_tokens": 1000}
            with client.stream(
                "POST", url + "/v1/chat/completions", json=stream_body, headers=headers
            ) as stream:
                assert stream.status_code == 200
                lines = stream.iter_lines()
                seen = [next(lines)]

                for _ in range(40):
                    idle.append(_connect(url))
                answered = _readable(idle, 40 - (CAP - 1))
                assert len(answered) == 40 - (CAP - 1)
                assert all(_refused(sock) for sock in answered)

                # a normal client beyond the cap: a 503 in OpenAI's shape, not a wait
                with httpx.Client(timeout=WAIT_S) as other:
                    refused = other.post(url + "/v1/chat/completions", json=BODY)
                refused_at_ns = time.time_ns()
                assert refused.status_code == 503
                assert refused.headers["retry-after"] == "1"
                assert refused.json()["error"]["type"] == "server_error"
                admitted = [sock for sock in idle if sock not in answered]
                assert not select.select(admitted, [], [], 0)[0]  # admitted ones: still silent

                # many more connections: each refused, the process's descriptors stay bounded
                flood = [_connect(url) for _ in range(300)]
                idle += flood
                assert len(_readable(flood, len(flood))) == len(flood)
                assert proc.num_fds() <= base_fds + CAP + guard.MAX_LINGERING + 8

                seen += list(lines)  # the stream established before the flood is unaffected
            stamps = _sse_stamps(seen)
            assert [line for line in seen if line][-1] == "data: [DONE]"
            assert len(stamps) >= 150 and stamps[-1] > refused_at_ns  # it ran past the refusals
        finally:
            for sock in idle:
                sock.close()

        # the idle connections closed: served again (polled, each try answered at once)
        deadline = time.monotonic() + WAIT_S
        while (answer := client.post(url + "/v1/chat/completions", json=BODY)).status_code == 503:
            assert time.monotonic() < deadline, "still refused after the idle ones closed"
            time.sleep(0.05)
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"]


def test_the_default_cap_comes_from_the_descriptor_limit(monkeypatch) -> None:
    monkeypatch.setattr(guard.resource, "getrlimit", lambda _which: (1024, 4096))
    assert guard.default_max_connections() == 1024 - guard.FD_RESERVE
    assert guard.default_max_connections(2) == (1024 - guard.FD_RESERVE) // 2
    assert guard.protocol(guard.GuardLimits()).limits.max_connections == 1024 - guard.FD_RESERVE
    relay_like = guard.protocol(guard.GuardLimits(), fds_per_connection=2)
    assert relay_like.limits.max_connections == (1024 - guard.FD_RESERVE) // 2
    assert guard.protocol(guard.GuardLimits(max_connections=7)).limits.max_connections == 7


@pytest.mark.parametrize(
    ("command", "env"),
    [
        (["-m", "mock_upstream", "--max-connections", "0"], {}),
        (["-m", "mock_upstream", "--max-connections", "many"], {}),
        (["-m", "relay", "--max-connections", "-3"], {}),
        (["-m", "relay"], {"RELAY_MAX_CONNECTIONS": "lots"}),
    ],
)
def test_a_bad_cap_is_a_usage_error(command, env) -> None:
    result = subprocess.run(
        [sys.executable, *command, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
    )
    assert result.returncode == 2
    assert "max-connections" in result.stderr.lower().replace("_", "-")
    assert "positive integer or 'auto'" in result.stderr


@in_loop
async def test_refusals_linger_at_most_max_lingering_at_once() -> None:
    cls = guard.protocol(guard.GuardLimits(max_connections=1))
    config = Config(_app, lifespan="off", log_level="warning")
    state = ServerState()

    def connect() -> tuple[Any, FakeTransport]:
        protocol, transport = cls(config=config, server_state=state, app_state={}), FakeTransport()
        protocol.connection_made(transport)
        return protocol, transport

    admitted, first = connect()
    assert not first.written and not first.closed
    refused = [connect() for _ in range(guard.MAX_LINGERING + 3)]
    assert all(t.written.startswith(b"HTTP/1.1 503 ") for _, t in refused)
    lingering = [t for _, t in refused if t.eof and not t.closed]
    assert len(lingering) == guard.MAX_LINGERING  # the rest were closed at once
    assert all(t.closed for _, t in refused[guard.MAX_LINGERING :])
    refused[0][0].connection_lost(None)  # a lingering one went: the next refusal may linger
    assert (t := connect()[1]).eof and not t.closed
    admitted.connection_lost(None)  # under the cap again: the next connection is admitted
    assert not connect()[1].written
