"""The plain-asyncio httpcore backend on real loopback sockets: reads, timeouts, EOF, errors."""

from __future__ import annotations

import asyncio
import socket

import httpcore
import pytest

from relay.network import AsyncioBackend


async def _serve(handler):
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_read_write_eof_and_idle_readability():
    async def main():
        async def handler(reader, writer):
            data = await reader.readexactly(5)
            writer.write(data.upper())
            await writer.drain()
            await reader.readexactly(3)
            writer.close()

        server, port = await _serve(handler)
        async with server:
            stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=2)
            assert stream.get_extra_info("socket").getsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY
            )
            await stream.write(b"hello")
            assert await stream.read(2, timeout=2) == b"HE"  # max_bytes respected
            assert await stream.read(100, timeout=2) == b"LLO"
            assert stream.get_extra_info("is_readable") is False
            await stream.write(b"bye")
            assert await stream.read(100, timeout=2) == b""  # clean EOF
            assert stream.get_extra_info("is_readable") is True  # a server close is visible
            await stream.aclose()

    asyncio.run(main())


def test_read_timeout_and_connect_errors():
    async def main():
        async def handler(reader, writer):
            await asyncio.sleep(5)

        server, port = await _serve(handler)
        async with server:
            stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=2)
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(httpcore.ReadTimeout):
                await stream.read(100, timeout=0.2)
            assert 0.15 < loop.time() - started < 1.0
            await stream.aclose()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            free = sock.getsockname()[1]
        with pytest.raises(httpcore.ConnectError):
            await AsyncioBackend().connect_tcp("127.0.0.1", free, timeout=2)

    asyncio.run(main())
