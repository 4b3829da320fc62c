"""Client disconnects are noticed at once; SIGTERM with a stream open exits 0 quickly."""

from __future__ import annotations

import re
import socket
import time

import httpx
import pytest

from relaybench.procs import ServerProcess

from .conftest import CHAT

REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"X-Mock-Output-Tokens: 1000\r\nContent-Length: %d\r\n\r\n%s"
)
MS = 1_000_000


def _open_stream(url: str, body: bytes) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.sendall(REQUEST % (len(body), body))
    return sock


def _recv_chunks(sock: socket.socket, n: int) -> bytes:
    received = b""
    while received.count(b"x_mock_emitted_ns") < n:
        piece = sock.recv(65536)
        assert piece, "the stream ended early"
        received += piece
    return received


def _wait_for(
    url: str, key: str, value: int, timeout: float = 3.0, *, at_least: bool = False
) -> dict:
    """``/mock/stats`` once ``key`` is ``value`` (or at least it), or when ``timeout`` is up."""
    deadline = time.monotonic() + timeout
    while True:
        stats = httpx.get(url + "/mock/stats").json()
        reached = stats[key] >= value if at_least else stats[key] == value
        if reached or time.monotonic() > deadline:
            return stats
        time.sleep(0.01)


def test_client_disconnect_mid_stream_is_cancelled_at_once(start_server) -> None:
    mock = start_server("mock_upstream", "--ttft-ms", "10", "--itl-ms", "10")
    body = b'{"messages": [{"role": "user", "content": "hi"}], "stream": true}'
    sock = _open_stream(mock.url, body)
    first_ns = int(re.search(rb'"x_mock_emitted_ns":(\d+)', _recv_chunks(sock, 5)).group(1))
    assert _wait_for(mock.url, "active_streams", 1)["active_streams"] == 1
    sock.close()
    closed_ns = time.time_ns()  # the client is gone by now
    stats = _wait_for(mock.url, "cancelled", 1)
    assert stats["cancelled"] == 1 and stats["active_streams"] == 0 and stats["completed"] == 0
    (entry,) = httpx.get(mock.url + "/mock/requests").json()["requests"]
    assert entry["end"] == "cancelled", entry
    # noticed at once, judged on the mock's own schedule rather than the test's clock (a paused
    # mock notices late, then writes what fell due meanwhile, one chunk per tick): the last
    # chunk it wrote was due within 50 ITLs of the close. Chunk i is due at the first one's
    # stamp less its lateness plus i x 10 ms, and no chunk is less late than the least.
    due_last_ns = first_ns - stats["lateness_ms"]["min"] * MS + (entry["chunks_sent"] - 1) * 10 * MS
    assert due_last_ns - closed_ns < 50 * 10 * MS, (entry, closed_ns, stats["lateness_ms"])
    chunks = stats["chunks"]
    time.sleep(0.1)  # ten more ITLs: nothing more may be generated
    assert httpx.get(mock.url + "/mock/stats").json()["chunks"] == chunks


@pytest.mark.parametrize("stream", [True, False])
def test_disconnect_during_ttft_or_queue_is_cancelled(start_server, stream: bool) -> None:
    mock = start_server("mock_upstream", "--ttft-ms", "5000", "--max-concurrency", "1")
    flag = b"true" if stream else b"false"
    body = b'{"messages": [{"role": "user", "content": "hi"}], "stream": %s}' % flag
    first, queued = _open_stream(mock.url, body), _open_stream(mock.url, body)
    stats = _wait_for(mock.url, "queued", 1)
    assert stats["active_requests"] == 1 and stats["queued"] == 1
    queued.close()
    stats = _wait_for(mock.url, "cancelled", 1)
    assert stats["queued"] == 0 and stats["cancelled"] == 1
    first.close()
    stats = _wait_for(mock.url, "cancelled", 2)
    assert stats["cancelled"] == 2 and stats["active_requests"] == 0
    assert stats["active_streams"] == 0


def test_openai_sdk_style_close_counts_cancelled(start_server) -> None:
    mock = start_server("mock_upstream", "--ttft-ms", "5", "--itl-ms", "5")
    body = {"messages": CHAT, "stream": True}
    with (
        httpx.Client() as client,
        client.stream(
            "POST",
            mock.url + "/v1/chat/completions",
            json=body,
            headers={"X-Mock-Output-Tokens": "500"},
        ) as r,
    ):
        for piece in r.iter_raw():
            if b"content" in piece:
                break
    assert _wait_for(mock.url, "cancelled", 1)["cancelled"] == 1


@pytest.mark.parametrize("sig_args", [(), ("--shutdown-grace-s", "0.5")])
def test_sigterm_with_a_stream_open_exits_0_within_5_s(sig_args: tuple[str, ...]) -> None:
    args = ["-m", "mock_upstream", "--host", "127.0.0.1", "--port", "0", "--ttft-ms", "1"]
    server = ServerProcess("mock_upstream", [*args, "--itl-ms", "50", *sig_args]).start()
    try:
        sock = _open_stream(
            server.url, b'{"messages": [{"role": "user", "content": "hi"}], "stream": true}'
        )
        _recv_chunks(sock, 1)
        signalled_ns = time.time_ns()
        code = server.stop(timeout=5.0)  # SIGTERM; SIGKILL (code -9) if not gone within 5 s
        assert code == 0  # it exited by itself, within the contract's 5 s
        sock.settimeout(2)
        rest = b""
        while piece := sock.recv(65536):  # the server closed our stream: EOF, not a hang
            rest += piece
        assert b"[DONE]" not in rest
        # by the mock's own stamps, it streamed for at most 5 s after the signal, then closed
        stamps = [int(ns) for ns in re.findall(rb'"x_mock_emitted_ns":(\d+)', rest)]
        assert stamps and (max(stamps) - signalled_ns) / 1e9 < 5.0, len(stamps)
        sock.close()
    finally:
        server.stop()
    assert "Traceback" not in "\n".join(server.output)


def test_sigint_idle_exits_0() -> None:
    import os
    import signal

    args = ["-m", "mock_upstream", "--host", "127.0.0.1", "--port", "0"]
    server = ServerProcess("mock_upstream", args).start()
    try:
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGINT)
        assert server.proc.wait(5) == 0
    finally:
        server.stop()


def test_reset_during_open_streams_keeps_counting_them(start_server) -> None:
    mock = start_server("mock_upstream", "--ttft-ms", "1", "--itl-ms", "10")
    sock = _open_stream(
        mock.url, b'{"messages": [{"role": "user", "content": "hi"}], "stream": true}'
    )
    _recv_chunks(sock, 3)
    httpx.post(mock.url + "/mock/reset")
    # more chunks fall due every 10 ms; the socket buffers what we do not read. Waited for by
    # count, not for a fixed time a paused mock may spend asleep
    stats = _wait_for(mock.url, "chunks", 5, timeout=10, at_least=True)
    sock.close()
    assert stats["requests"] == 0  # it arrived before the reset
    assert stats["chunks"] >= 5 and stats["lateness_ms"]["count"] == stats["chunks"]


def test_relaybench_mock_subcommand_serves_and_stops() -> None:
    args = ["-m", "relaybench.cli", "mock", "--host", "127.0.0.1", "--port", "0", "--ttft-ms", "1"]
    server = ServerProcess("relaybench-mock", args).start()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        assert httpx.get(server.url + "/health").json() == {"status": "ok"}
        assert sum("listening on" in line for line in server.output) == 1
    finally:
        assert server.stop() == 0
