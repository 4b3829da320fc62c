"""Slow and oversized clients are cut off by both servers while a normal client is served.

Real servers on 127.0.0.1, real sockets. The limits are set small (1 s timeouts) so the test is
short; what is asserted is the answer and that the connection closed before the client was done,
never a wall-clock window.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import httpx
import pytest

LIMITS_MOCK = ["--header-timeout-s", "1", "--body-timeout-s", "1"]
LIMITS_RELAY = ["--header-timeout-ms", "1000", "--body-timeout-ms", "1000"]
SIZES = ["--max-header-bytes", "8192", "--max-headers", "50"]
CHAT = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
READ_TIMEOUT_S = 20.0  # a client the server never cuts off fails the test after this


@pytest.fixture(params=["mock", "relay"])
def server(request, start_server) -> str:
    mock = start_server("mock_upstream", "--ttft-ms", "10", "--itl-ms", "1", *LIMITS_MOCK, *SIZES)
    if request.param == "mock":
        return mock.url
    relay = start_server(
        "relay", "--upstream-url", mock.url, "--auth", "off", *LIMITS_RELAY, *SIZES
    )
    return relay.url


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=READ_TIMEOUT_S)
    return sock


def _answer(sock: socket.socket) -> tuple[int | None, bool]:
    """Read until the server closes: (status of its answer or None, whether it closed)."""
    data = bytearray()
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return None, False
    except ConnectionResetError:
        pass
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else None
    return status, True


def _keep_sending(sock: socket.socket, pieces: Iterator[bytes], every_s: float) -> threading.Event:
    """Send ``pieces`` one by one in a thread (``every_s`` apart) until the server cuts us off;
    the event is set if every piece went out (the server never stopped us)."""
    finished = threading.Event()

    def run() -> None:
        try:
            for piece in pieces:
                sock.sendall(piece)
                if every_s:
                    time.sleep(every_s)
        except OSError:
            return
        finished.set()

    threading.Thread(target=run, daemon=True).start()
    return finished


def _served_normally(url: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    with httpx.Client(timeout=10) as client:
        assert client.get(url + "/health").status_code == 200
        answer = client.post(url + "/v1/chat/completions", json={**body, "stream": False})
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"]


def _cut_off(
    url: str, first: bytes, rest: Callable[[], Iterator[bytes]], every_s: float, status: int
) -> None:
    """Several such clients at once; a normal client is served meanwhile; each slow one gets
    ``status`` and is closed; a trickling one (``every_s``) before it finished sending."""
    clients = []
    for _ in range(5):
        sock = _connect(url)
        sock.sendall(first)
        clients.append((sock, _keep_sending(sock, rest(), every_s)))
    try:
        _served_normally(url)
        for sock, finished in clients:
            assert _answer(sock) == (status, True)
            assert not (every_s and finished.is_set())
    finally:
        for sock, _ in clients:
            sock.close()


def test_slow_headers_get_408(server: str) -> None:
    # one byte every 100 ms for 60 s: headers that never end in any useful time
    _cut_off(server, CHAT, lambda: iter([b"X"] * 600), 0.1, 408)


def test_a_slow_body_gets_408(server: str) -> None:
    head = CHAT + b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"
    _cut_off(server, head, lambda: iter([b" "] * 600), 0.1, 408)


def test_a_body_never_sent_gets_408(server: str) -> None:
    head = CHAT + b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
    _cut_off(server, head, lambda: iter([]), 0.0, 408)


def test_a_huge_header_line_gets_431(server: str) -> None:
    # 8 MiB of one header line, sent as fast as the server reads it
    _cut_off(server, CHAT + b"X-Big: ", lambda: iter([b"a" * 65536] * 128), 0.0, 431)


def test_too_many_headers_get_431(server: str) -> None:
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(100_000))
    _cut_off(server, CHAT, lambda: iter([many, b"\r\n"]), 0.0, 431)


def test_an_idle_connection_is_closed(server: str) -> None:
    sock = _connect(server)
    try:
        _served_normally(server)
        assert _answer(sock) == (None, True)  # closed, nothing to answer
    finally:
        sock.close()


def test_keep_alive_requests_each_get_their_own_header_clock(server: str) -> None:
    with httpx.Client(timeout=10) as client:
        for _ in range(3):
            assert client.get(server + "/health").status_code == 200
            time.sleep(0.6)  # together longer than the 1 s header timeout; each under it
