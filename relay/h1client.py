"""The relay's upstream HTTP/1.1 client: an asyncio Protocol and httptools' parser, over TCP or TLS.

Why not httpx here: profiled at 100 concurrent streams, httpx -> httpcore -> h11 was about 40%
of the relay's CPU (h11 parses chunked encoding in pure Python, several generator layers wrap
every read, and each request walks httpx's client and pool machinery). This client parses with
httptools (llhttp, in C, already installed with uvicorn) inside ``data_received``; the body
bytes of one socket read are handed to the reader at once, with a single future wake-up.

It does only what the relay needs: ``POST``-style requests with a whole body, a streamed
response, keep-alive connections to one origin (``http://`` or ``https://``) with explicit
limits (``max_connections``, ``max_keepalive``, ``keepalive_expiry``) and connect, write and
pool timeouts. ``https://`` uses the standard ``ssl`` module through the event loop: the chain
is verified (the system's trust store, or the given context's CA file), with SNI and the
hostname checked. There is no read timeout: the relay's ``Exchange`` watches first-token and
idle gaps. Failures are raised as httpx's exceptions (``ConnectError`` and its ``TLSError``,
``ConnectTimeout``, ``PoolTimeout``, ``WriteTimeout``, ``ReadError``, ``RemoteProtocolError``),
so ``relay.errors.from_transport`` stays the one place that turns them into outcomes.

A response that was not read to its end is never reused: ``aclose`` closes its connection, which
is also how the upstream learns that the client went away.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import httptools
import httpx

# Unread body bytes above which the upstream socket stops being read (a slow client then
# slows the upstream through TCP, instead of growing the relay's memory).
READ_HIGH_WATER = 256 * 1024


class TLSError(httpx.ConnectError):
    """The upstream's TLS handshake failed: its certificate was not trusted, or named another
    host. Another attempt would fail the same way."""


class _Connection(asyncio.Protocol):
    """One upstream TCP connection; the parser's callbacks fill in the current response."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.error: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.drained: asyncio.Future[None] | None = None
        self.write_paused = False
        self.read_paused = False
        self.idle_since = 0.0
        # While the response's reader waits, each read's body goes to this straight from
        # ``data_received`` (no task wake-up per read); False from it stops that
        self.sink: Callable[[bytes], bool] | None = None
        self.start()
        self.active = False

    def start(self) -> None:
        """Forget the previous response: a new request is about to be written."""
        self.active = True
        self.received = False  # any byte of this response yet
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.until_eof = False  # neither content-length nor chunked: the body ends at EOF
        self.keep_alive = False
        self.complete = False
        self.body: list[bytes] = []
        self.buffered = 0

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio subclass

    def data_received(self, data: bytes) -> None:
        if not self.active or self.complete:
            # Bytes no request asked for: the connection can no longer be trusted.
            self.error = httpx.RemoteProtocolError("the upstream sent unexpected data")
            self.close()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.error = httpx.RemoteProtocolError(f"malformed upstream response ({exc})")
            self.close()
        if self.sink is None or not self._pump(self.sink):
            self._wake()

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.sink = None
        if self.head_done and self.until_eof and exc is None:
            self.complete = True
        elif exc is not None and self.error is None:
            self.error = httpx.ReadError(str(exc))
        self._wake()
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    # -- httptools callbacks --------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        names = {name.lower() for name, _ in self.raw_headers}
        self.until_eof = b"content-length" not in names and b"transfer-encoding" not in names
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.buffered += len(body)
        if self.buffered > READ_HIGH_WATER and not self.read_paused and self.transport:
            self.read_paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        self.complete = True

    # -- used by the pool and the response ------------------------------------------------

    def take_body(self) -> bytes:
        body = self.body
        data = body[0] if len(body) == 1 else b"".join(body)
        body.clear()
        self.buffered = 0
        if self.read_paused and self.transport is not None and not self.closed:
            self.read_paused = False
            self.transport.resume_reading()
        return data

    def _pump(self, sink: Callable[[bytes], bool]) -> bool:
        """Hand this read's body to ``sink``; False: the pump stops, the reader must wake."""
        if (self.body and not sink(self.take_body())) or (
            self.complete or self.closed or self.error is not None
        ):
            self.sink = None
            return False
        return True

    async def wait(self) -> None:
        """Until the next ``data_received`` or ``connection_lost``."""
        waiter = self.waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self.waiter = None

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.closed = True


class H1Response:
    """A response whose head has arrived; the body is read with ``aiter_raw``."""

    def __init__(self, pool: H1Pool, conn: _Connection) -> None:
        self._pool = pool
        self._conn: _Connection | None = conn
        self.status_code = conn.status
        self.raw_headers = conn.raw_headers

    @property
    def headers(self) -> httpx.Headers:
        return httpx.Headers(self.raw_headers)

    async def aiter_raw(self, sink: Callable[[bytes], bool] | None = None) -> AsyncIterator[bytes]:
        """The body as it arrives: everything one socket read brought, per step.

        With ``sink``, what arrives while this waits goes to ``sink`` instead, from the
        connection's ``data_received``, until ``sink`` returns False (it keeps what it could not
        pass on) or the body ends; then this yields ``b""`` once, so the reader can look.
        """
        conn = self._conn
        if conn is None:
            return
        while True:
            if conn.body:
                yield conn.take_body()
            elif conn.complete:  # whole, even if junk after it broke the connection
                return
            elif conn.error is not None:
                raise conn.error
            elif conn.closed:
                raise httpx.RemoteProtocolError("the upstream closed the connection mid-response")
            elif sink is None:
                await conn.wait()
            else:
                conn.sink = sink
                try:
                    await conn.wait()
                finally:
                    conn.sink = None
                yield b""

    async def aclose(self) -> None:
        """Give the connection back: to the idle pool if the body was read whole, else closed."""
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.release(conn, reusable=conn.complete and conn.keep_alive and not conn.body)


class H1Pool:
    """Keep-alive connections to one ``http://`` or ``https://`` origin.

    ``ssl_context`` is for ``https://`` only; by default ``ssl.create_default_context()``
    (the system's trust store, hostname checked).
    """

    def __init__(
        self,
        base_url: str,
        *,
        max_connections: int,
        max_keepalive: int,
        keepalive_expiry: float,
        connect_timeout: float,
        write_timeout: float,
        pool_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"H1Pool needs an http(s)://host[:port] URL, got {base_url!r}")
        if parts.scheme == "http" and ssl_context is not None:
            raise ValueError(f"an ssl_context was given for a plain http URL: {base_url!r}")
        self.host = parts.hostname
        self.tls = (
            (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
        )
        self.port = parts.port or (443 if self.tls else 80)
        self.host_header = parts.netloc.encode("ascii")
        self.max_connections = max_connections
        self.max_keepalive = max_keepalive
        self.keepalive_expiry = keepalive_expiry
        self.connect_timeout = connect_timeout
        self.write_timeout = write_timeout
        self.pool_timeout = pool_timeout
        self._idle: list[_Connection] = []  # most recently used last: reused first
        self._busy: set[_Connection] = set()
        self._connecting = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    def state(self) -> dict[str, int]:
        """Open connections by state (closed idle ones are dropped first)."""
        self._idle = [c for c in self._idle if not c.closed]
        busy = len(self._busy) + self._connecting
        return {"total": len(self._idle) + busy, "idle": len(self._idle), "busy": busy}

    async def request(
        self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> H1Response:
        """Send the request; return once the response head arrived (the body is unread)."""
        head = [
            b"%s %s HTTP/1.1\r\nhost: %s\r\ncontent-length: %d\r\n"
            % (method, target, self.host_header, len(body))
        ]
        for name, value in headers:
            if b"\n" in value or b"\r" in value:
                raise ValueError(f"header {name!r} holds a line break")
            head.append(b"%s: %s\r\n" % (name, value))
        head.append(b"\r\n")
        head.append(body)
        data = b"".join(head)
        retried = False
        while True:
            conn, reused = await self._acquire(fresh=retried)
            try:
                conn.start()
                await self._write(conn, data)
                while not conn.head_done:
                    if conn.error is not None:
                        raise conn.error
                    if conn.closed:
                        raise httpx.RemoteProtocolError("the upstream closed the connection")
                    await conn.wait()
            except (httpx.WriteError, httpx.ReadError, httpx.RemoteProtocolError):
                self.release(conn, reusable=False)
                # A kept-alive connection the upstream closed just as it was reused: it ended
                # without a byte of answer, so the upstream never took the request. Once more,
                # on a new connection.
                if reused and not conn.received and not retried:
                    retried = True
                    continue
                raise
            except BaseException:
                self.release(conn, reusable=False)
                raise
            return H1Response(self, conn)

    async def _write(self, conn: _Connection, data: bytes) -> None:
        transport = conn.transport
        if conn.closed or transport is None or transport.is_closing():
            raise httpx.WriteError("the upstream connection is closed")
        transport.write(data)
        if conn.write_paused:
            conn.drained = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(self.write_timeout):
                    await conn.drained
            except TimeoutError:
                raise httpx.WriteTimeout("timed out writing to the upstream") from None

    async def _acquire(self, fresh: bool) -> tuple[_Connection, bool]:
        """A connection and whether it is a reused one; ``fresh``: never an idle one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.pool_timeout
        while True:
            now = loop.time()
            while self._idle and not fresh:
                conn = self._idle.pop()
                if conn.closed or now - conn.idle_since > self.keepalive_expiry:
                    conn.close()
                    continue
                self._busy.add(conn)
                return conn, True
            if len(self._busy) + self._connecting < self.max_connections:
                break
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except BaseException as exc:
                if waiter.cancelled():
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)
                else:
                    self._wake_one()  # woken but leaving: pass the free slot on
                if isinstance(exc, TimeoutError):
                    raise httpx.PoolTimeout("no upstream connection became free in time") from None
                raise
        self._connecting += 1
        try:
            conn = await self._connect(loop)
        except BaseException:
            self._connecting -= 1
            self._wake_one()  # the failed attempt's slot is free again
            raise
        self._connecting -= 1
        self._busy.add(conn)
        return conn, False

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        tls = {} if self.tls is None else {"ssl": self.tls, "server_hostname": self.host}
        try:
            async with asyncio.timeout(self.connect_timeout):
                transport, conn = await loop.create_connection(
                    _Connection, self.host, self.port, **tls
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"timed out connecting to {self.host}:{self.port}") from None
        except ssl.SSLError as exc:  # before OSError: it is one
            raise TLSError(f"TLS with {self.host}:{self.port} failed: {exc}") from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from exc
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def release(self, conn: _Connection, *, reusable: bool) -> None:
        self._busy.discard(conn)
        if reusable and not conn.closed and len(self._idle) < self.max_keepalive:
            conn.active = False
            conn.idle_since = asyncio.get_running_loop().time()
            self._idle.append(conn)
        else:
            conn.close()
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def aclose(self) -> None:
        for conn in [*self._idle, *self._busy]:
            conn.close()
        self._idle.clear()
        self._busy.clear()
