"""relaybench.guard relies on uvicorn's HttpToolsProtocol internals: these fail when they change.

The names are checked directly, and the guard's behaviour is checked through a fake transport
(no network): a refusal raised inside a parser callback must come out as our 431 through
``send_400_response``, the timers must run on ``loop``, and so on.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from relaybench import guard

HOOKS = {
    "connection_made": ["self", "transport"],
    "connection_lost": ["self", "exc"],
    "data_received": ["self", "data"],
    "on_message_begin": ["self"],
    "on_url": ["self", "url"],
    "on_header": ["self", "name", "value"],
    "on_headers_complete": ["self"],
    "on_message_complete": ["self"],
    "send_400_response": ["self", "msg"],
}


def test_the_hooks_guard_overrides_exist_with_their_signatures() -> None:
    for name, params in HOOKS.items():
        method = getattr(HttpToolsProtocol, name)
        assert list(inspect.signature(method).parameters) == params, name
    source = inspect.getsource(HttpToolsProtocol.data_received)
    assert "self.send_400_response(" in source and "self.logger.warning(" in source
    cycle = inspect.signature(RequestResponseCycle.__init__).parameters
    assert "message_event" in cycle
    cycle_src = inspect.getsource(RequestResponseCycle)
    for attr in ("self.disconnected", "self.response_started", "self.response_complete"):
        assert attr in cycle_src


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.eof = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5555), "sockname": ("127.0.0.1", 80)}.get(name, default)

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _app(scope: dict, receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _connect(limits: guard.GuardLimits) -> tuple[Any, FakeTransport]:
    config = Config(_app, lifespan="off", log_level="warning")
    protocol = guard.protocol(limits)(config=config, server_state=ServerState(), app_state={})
    assert protocol.loop is asyncio.get_running_loop()
    for attr in ("transport", "cycle", "logger", "client"):
        assert hasattr(protocol, attr), attr
    transport = FakeTransport()
    protocol.connection_made(transport)
    assert hasattr(protocol, "flow")  # set by connection_made; a refusal resumes its reading
    return protocol, transport


def in_loop(test):
    """Run an async test body in a fresh event loop (the project has no async pytest plugin)."""

    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())

    return run


async def _until(check: Any, timeout: float = 10.0) -> None:
    """Wait for ``check()`` (a timer under test), polling; no fixed sleep to get lucky with."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def _status(transport: FakeTransport) -> int:
    return int(bytes(transport.written).split(b" ", 2)[1])


@in_loop
async def test_too_many_headers_raise_inside_the_parser_and_answer_431() -> None:
    protocol, transport = _connect(guard.GuardLimits(max_headers=3))
    protocol.data_received(b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 10 + b"\r\n")
    assert _status(transport) == 431 and transport.eof
    assert b'"code":431' in transport.written
    assert protocol.cycle is None  # the app never started
    protocol.data_received(b"more")  # lingering: dropped
    assert _status(transport) == 431


@in_loop
async def test_a_header_block_larger_than_the_limit_answers_431() -> None:
    protocol, transport = _connect(guard.GuardLimits(max_header_bytes=1000))
    protocol.data_received(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 600)
    assert not transport.written  # under the limit so far
    protocol.data_received(b"a" * 600)  # the line is still open: counted as it arrives
    assert _status(transport) == 431


@in_loop
async def test_header_and_body_timers_run_on_the_loop() -> None:
    protocol, transport = _connect(guard.GuardLimits(header_timeout_s=0.05, body_timeout_s=0.05))
    protocol.data_received(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n")
    await _until(lambda: transport.written)
    assert _status(transport) == 408
    protocol, transport = _connect(guard.GuardLimits(header_timeout_s=5, body_timeout_s=0.05))
    protocol.data_received(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n12345")
    cycle = protocol.cycle
    await _until(lambda: transport.written)
    assert _status(transport) == 408 and cycle.disconnected  # the app saw a disconnect


@in_loop
async def test_a_silent_connection_is_closed_without_an_answer() -> None:
    _protocol, transport = _connect(guard.GuardLimits(header_timeout_s=0.05))
    await _until(lambda: transport.closed)
    assert transport.closed and not transport.written


@in_loop
async def test_a_normal_request_is_served_and_bad_http_still_gets_400() -> None:
    protocol, transport = _connect(guard.GuardLimits(header_timeout_s=0.05))
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.sleep(0.2)  # past the header timeout: it no longer applies
    assert _status(transport) == 200 and not transport.closed
    protocol, transport = _connect(guard.GuardLimits())
    protocol.data_received(b"NOT HTTP AT ALL\r\n\r\n")
    assert _status(transport) == 400 and transport.closed


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="header_timeout_s"):
        guard.GuardLimits(header_timeout_s=0)
