"""tools.drive_streams: back-to-back streams on keep-alive connections, every event counted."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading

import httpx
import pytest

from tools import drive_streams


def test_streams_back_to_back_and_counts_every_event(start_server, capsys) -> None:
    mock = start_server("mock_upstream", "--ttft-ms", "0", "--itl-ms", "2")
    port = int(mock.url.rsplit(":", 1)[1])
    argv = ["--port", str(port), "--streams", "3", "--duration", "0.5", "--max-tokens", "5"]
    assert drive_streams.main(argv) == 0
    events = int(capsys.readouterr().out.split()[-1])
    stats = httpx.get(mock.url + "/mock/stats").json()
    # each stream: the role chunk, 5 tokens, the finish_reason chunk and [DONE]
    assert stats["completed"] >= 3 and events == stats["completed"] * 8, (events, stats)


def test_a_port_out_of_range_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        drive_streams.main(["--port", "70000"])
    assert exit_.value.code == 2 and "--port" in capsys.readouterr().err


class _Server:
    """An asyncio server in a thread: every request answered with ``answer`` (None: never)."""

    def __init__(self, answer: bytes | None) -> None:
        self.answer = answer
        self.ready = threading.Event()
        self.thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                if self.answer is not None:
                    writer.write(self.answer)
                    await writer.drain()

    async def _serve(self) -> None:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self.loop, self.stop = asyncio.get_running_loop(), asyncio.Event()
        self.ready.set()
        async with server:
            await self.stop.wait()

    def __enter__(self) -> _Server:
        self.thread.start()
        assert self.ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(5)


def _drive(port: int, capsys) -> tuple[int, str]:
    code = drive_streams.main(["--port", str(port), "--streams", "2", "--duration", "0.2"])
    return code, capsys.readouterr().err


def test_an_answer_that_is_no_stream_ends_the_drive_with_its_status(capsys) -> None:
    with _Server(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\n\r\nno") as server:
        code, err = _drive(server.port, capsys)
    assert code == 1 and "answered HTTP 401, not a stream" in err


def test_a_server_that_never_answers_ends_the_drive_after_the_slack(capsys, monkeypatch) -> None:
    monkeypatch.setattr(drive_streams, "SLACK_S", 0.5)
    with _Server(None) as server:
        code, err = _drive(server.port, capsys)
    assert code == 1 and "did not end within 0.5 s of the 0.2 s run" in err


def test_nothing_listening_is_a_clear_error(capsys) -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        code, err = _drive(sock.getsockname()[1], capsys)
    assert code == 1 and "cannot reach 127.0.0.1:" in err
