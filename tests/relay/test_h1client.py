"""The httptools-based upstream client on real loopback sockets: framing, reuse, limits, errors."""

from __future__ import annotations

import asyncio
import socket
import threading

import httpx
import pytest

from relay.h1client import READ_HIGH_WATER, H1Pool

CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


def pool_for(port: int, **overrides: float) -> H1Pool:
    settings: dict = dict(
        max_connections=4,
        max_keepalive=4,
        keepalive_expiry=30.0,
        connect_timeout=2.0,
        write_timeout=2.0,
        pool_timeout=2.0,
    )
    settings.update(overrides)
    return H1Pool(f"http://127.0.0.1:{port}", **settings)


async def serve(handler):
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def body_of(response) -> list[bytes]:
    return [part async for part in response.aiter_raw()]


def test_streams_chunks_as_read_and_reuses_the_connection():
    requests: list[bytes] = []
    connections = 0

    async def handler(reader, writer):
        nonlocal connections
        connections += 1
        while not reader.at_eof():
            try:
                requests.append(await read_request(reader))
            except asyncio.IncompleteReadError:
                break
            writer.write(CHUNKED_HEAD + chunk(b"data: {}\n\n"))
            await writer.drain()
            await asyncio.sleep(0.02)
            writer.write(chunk("data: é\n\n".encode()) + b"0\r\n\r\n")
            await writer.drain()

    async def main():
        server, port = await serve(handler)
        async with server:
            pool = pool_for(port)
            for _ in range(3):
                response = await pool.request(
                    b"POST", b"/v1/chat/completions", [(b"x-request-id", b"r1")], b"{}"
                )
                assert response.status_code == 200
                assert response.headers["content-type"] == "text/event-stream"
                parts = await body_of(response)
                assert parts == [b"data: {}\n\n", "data: é\n\n".encode()]  # one part per read
                await response.aclose()
                assert pool.state() == {"total": 1, "idle": 1, "busy": 0}
            await pool.aclose()
        assert connections == 1
        assert requests[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
        assert b"\r\nhost: 127.0.0.1:%d\r\n" % port in requests[0]
        assert b"\r\ncontent-length: 2\r\n" in requests[0]
        assert b"\r\nx-request-id: r1\r\n" in requests[0] and requests[0].endswith(b"\r\n\r\n{}")

    asyncio.run(main())


def test_cut_body_malformed_response_and_early_close_are_errors():
    async def handler(reader, writer):
        request = await read_request(reader)
        if b"/cut" in request:
            writer.write(CHUNKED_HEAD + chunk(b"data: {}\n\n"))
        elif b"/garbage" in request:
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        # /nothing: close without any response
        await writer.drain()
        writer.close()

    async def main():
        server, port = await serve(handler)
        async with server:
            pool = pool_for(port)
            response = await pool.request(b"POST", b"/cut", [], b"")
            with pytest.raises(httpx.RemoteProtocolError):
                await body_of(response)
            await response.aclose()
            with pytest.raises(httpx.RemoteProtocolError, match="malformed"):
                await pool.request(b"POST", b"/garbage", [], b"")
            with pytest.raises(httpx.RemoteProtocolError):
                await pool.request(b"POST", b"/nothing", [], b"")
            assert pool.state() == {"total": 0, "idle": 0, "busy": 0}  # none kept for reuse
            await pool.aclose()

    asyncio.run(main())


def test_body_until_eof_and_unread_response_is_not_reused():
    async def handler(reader, writer):
        request = await read_request(reader)
        if b"/eof" in request:  # no content-length, no chunking: the body ends at EOF
            writer.write(b"HTTP/1.1 503 Busy\r\nretry-after: 2\r\nconnection: close\r\n\r\nbusy")
            await writer.drain()
            writer.close()
            return
        writer.write(CHUNKED_HEAD + chunk(b"data: {}\n\n"))  # and then never ends
        await writer.drain()
        await asyncio.sleep(5)

    async def main():
        server, port = await serve(handler)
        async with server:
            pool = pool_for(port)
            response = await pool.request(b"POST", b"/eof", [], b"")
            assert response.status_code == 503 and response.headers["retry-after"] == "2"
            assert b"".join(await body_of(response)) == b"busy"
            await response.aclose()
            response = await pool.request(b"POST", b"/endless", [], b"")
            async for _ in response.aiter_raw():
                break
            await response.aclose()  # mid-body: closed, never handed to the next request
            assert pool.state() == {"total": 0, "idle": 0, "busy": 0}
            await pool.aclose()

    asyncio.run(main())


def test_pool_limit_waits_then_times_out_and_keepalive_limit_closes_surplus():
    async def main():
        gate = asyncio.Event()

        async def handler(reader, writer):
            while True:
                try:
                    await read_request(reader)
                except asyncio.IncompleteReadError:
                    return
                writer.write(CHUNKED_HEAD)
                await writer.drain()
                await gate.wait()
                writer.write(b"0\r\n\r\n")
                await writer.drain()

        server, port = await serve(handler)
        async with server:
            pool = pool_for(
                port,
                max_connections=2,
                max_keepalive=1,
                pool_timeout=0.2,
                connect_timeout=10.0,
                write_timeout=10.0,
            )
            first = await pool.request(b"POST", b"/", [], b"")
            second = await pool.request(b"POST", b"/", [], b"")
            assert pool.state() == {"total": 2, "idle": 0, "busy": 2}
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(httpx.PoolTimeout):
                await pool.request(b"POST", b"/", [], b"")
            # The pool timeout's 0.2 s, not one of the 10 s others (seconds of margin).
            assert 0.15 < loop.time() - started < 5.0
            # A waiting request gets the connection the moment one is given back.
            third = asyncio.ensure_future(pool.request(b"POST", b"/", [], b""))
            await asyncio.sleep(0.05)
            assert not third.done()
            gate.set()
            for response in (first, second):
                assert await body_of(response) == []
                await response.aclose()
            response = await asyncio.wait_for(third, 10)
            await body_of(response)
            await response.aclose()
            assert pool.state() == {"total": 1, "idle": 1, "busy": 0}  # max_keepalive=1
            await pool.aclose()

    asyncio.run(main())


def test_connect_errors_and_a_server_closed_idle_connection():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()  # the server ends the kept-alive connection

    async def main():
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            free = sock.getsockname()[1]
        with pytest.raises(httpx.ConnectError):
            await pool_for(free).request(b"POST", b"/", [], b"")
        server, port = await serve(handler)
        async with server:
            pool = pool_for(port)
            response = await pool.request(b"POST", b"/", [], b"")
            assert b"".join(await body_of(response)) == b"{}"
            await response.aclose()
            assert pool.state()["idle"] == 1
            deadline = asyncio.get_running_loop().time() + 5
            while pool.state()["total"] and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
            assert pool.state() == {"total": 0, "idle": 0, "busy": 0}  # the close was noticed
            response = await pool.request(b"POST", b"/", [], b"")  # a fresh connection
            assert b"".join(await body_of(response)) == b"{}"
            await response.aclose()
            with pytest.raises(ValueError):
                await pool.request(b"POST", b"/", [(b"x-bad", b"a\r\nb")], b"")
            await pool.aclose()

    asyncio.run(main())


def test_a_reader_behind_the_upstream_pauses_and_resumes_the_socket():
    piece = b"x" * 65536

    async def handler(reader, writer):
        await read_request(reader)
        writer.write(CHUNKED_HEAD)
        for _ in range(32):  # 2 MiB, written as fast as the socket takes it
            writer.write(chunk(piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def main():
        server, port = await serve(handler)
        async with server:
            pool = pool_for(port)
            response = await pool.request(b"POST", b"/", [], b"")
            conn = response._conn
            assert conn is not None
            deadline = asyncio.get_running_loop().time() + 5
            while not conn.read_paused and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)  # nobody reads: the buffer passes the high-water mark
            assert conn.read_paused
            assert READ_HIGH_WATER < conn.buffered < 4 * READ_HIGH_WATER  # not the whole 2 MiB
            total = sum(len(part) for part in await body_of(response))
            assert total == 32 * len(piece)
            await response.aclose()
            assert pool.state()["idle"] == 1
            await pool.aclose()

    asyncio.run(main())


class ClosingOnReuse:
    """A raw-socket upstream: answers a connection's first request with keep-alive, and when
    that connection is reused it closes it at once (``partial``: after part of a status line),
    as an upstream whose keep-alive timer fired just then does. New connections are served."""

    ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"

    def __init__(self, partial: bytes = b"") -> None:
        self.partial = partial
        self.connections = 0
        self.requests = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            served = 0
            while True:
                data = b""
                while not data.endswith(b"\r\n\r\n{}"):
                    more = conn.recv(65536)
                    if not more:
                        return
                    data += more
                self.requests += 1
                if served:
                    conn.sendall(self.partial)
                    return  # closed as it was reused
                conn.sendall(self.ANSWER)
                served += 1

    def close(self) -> None:
        self.sock.close()
        self._thread.join(2)


def test_a_reused_connection_closed_at_reuse_is_retried_once_on_a_fresh_one():
    upstream = ClosingOnReuse()

    async def main():
        pool = pool_for(upstream.port)
        try:
            for _ in range(3):
                response = await pool.request(b"POST", b"/", [], b"{}")
                assert response.status_code == 200
                assert b"".join(await body_of(response)) == b"{}"
                await response.aclose()
        finally:
            await pool.aclose()

    try:
        asyncio.run(main())
    finally:
        upstream.close()
    # Requests 2 and 3 each met a closing kept-alive connection and went out again fresh.
    assert upstream.connections == 3 and upstream.requests == 5


def test_a_reused_connection_that_answered_in_part_is_not_retried():
    upstream = ClosingOnReuse(partial=b"HTTP/1.1 200 OK\r\n")

    async def main():
        pool = pool_for(upstream.port)
        try:
            response = await pool.request(b"POST", b"/", [], b"{}")
            await body_of(response)
            await response.aclose()
            with pytest.raises(httpx.RemoteProtocolError):
                await pool.request(b"POST", b"/", [], b"{}")
        finally:
            await pool.aclose()

    try:
        asyncio.run(main())
    finally:
        upstream.close()
    assert upstream.connections == 1 and upstream.requests == 2  # the upstream had begun: no retry


def test_a_sink_gets_the_reads_while_the_reader_waits_and_can_hand_back():
    """``aiter_raw(sink)``: each read goes to the sink from the callback; the reader wakes (one
    ``b""``) only when the sink says stop; what arrives after that is read the usual way."""
    pieces = [b"data: %d\n\n" % i for i in range(6)]
    sent = asyncio.Event()

    async def handler(reader, writer):
        await read_request(reader)
        writer.write(CHUNKED_HEAD)
        for i, piece in enumerate(pieces):
            writer.write(chunk(piece))
            await writer.drain()
            await asyncio.sleep(0.05)
            if i == 3:
                await sent.wait()  # the rest once the reader has looked
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def main():
        server, port = await serve(handler)
        async with server:
            pool = pool_for(port)
            response = await pool.request(b"POST", b"/v1/chat/completions", [], b"{}")
            sunk: list[bytes] = []

            def sink(data: bytes) -> bool:
                sunk.append(data)
                return not data.endswith(pieces[3])  # the fourth: stop, the reader looks

            steps = []
            async for part in response.aiter_raw(sink):
                steps.append(part)
                if part == b"":
                    sent.set()
            await response.aclose()
            await pool.aclose()
        # what came with the head is yielded (it was there before the reader waited); every
        # later read went to the sink, in order, none doubled
        early = steps[: steps.index(b"")]
        assert b"".join(early) + b"".join(sunk) == b"".join(pieces)
        # after that the reader woke only twice: when the sink stopped, and at the end
        assert steps[len(early) :] == [b"", b""]

    asyncio.run(main())
