"""The fast path (``relay.forward``): what it hands back to the task, and that streams take it."""

from __future__ import annotations

import asyncio

import httpx

from relay.errors import UpstreamBroken
from relay.exchange import Exchange
from relay.forward import Forward

from .conftest import chat

CHAT = "/v1/chat/completions"


class FakeWire:
    def __init__(self, takes: bool) -> None:
        self.takes, self.written = takes, []

    def write(self, data: bytes) -> bool:
        if self.takes:
            self.written.append(data)
        return self.takes


def _forward(feed, wire: FakeWire) -> tuple[Forward, Exchange]:
    exchange = Exchange(first_token_s=5.0, idle_s=5.0)
    return Forward(feed, wire, exchange), exchange  # type: ignore[arg-type]


def test_writes_stamp_and_count_until_the_socket_is_full() -> None:
    async def main() -> None:
        wire = FakeWire(takes=True)
        forward, exchange = _forward(lambda chunk: chunk.upper(), wire)
        assert forward(b"a") and forward(b"b") and wire.written == [b"A", b"B"]
        assert forward.writes == 2 and exchange.last > 0
        wire.takes = False
        assert not forward(b"c") and forward.held == b"C" and forward.writes == 2

    asyncio.run(main())


def test_anything_a_block_raises_goes_to_the_task_not_the_event_loop() -> None:
    """An exception out of ``data_received`` would make the loop close the upstream socket, and
    a bug of the relay's would read as a cut upstream: every one is kept for the task."""

    async def main() -> None:
        for error in (UpstreamBroken("bad", code="upstream_malformed"), RuntimeError("a bug")):

            def feed(chunk: bytes, error: Exception = error) -> bytes:
                raise error

            forward, _ = _forward(feed, FakeWire(takes=True))
            assert forward(b"x") is False and forward.failed is error

    asyncio.run(main())


def test_an_interrupted_stream_takes_no_more() -> None:
    async def main() -> None:
        wire = FakeWire(takes=True)
        forward, exchange = _forward(lambda chunk: chunk, wire)
        exchange.reason = "disconnect"
        assert forward(b"x") is False and wire.written == []

    asyncio.run(main())


def test_streams_through_the_relay_take_the_fast_path(relay) -> None:
    server = relay("--auth", "off", env={"RELAY_ANON_PLAN": "unlimited"})
    headers = {"X-Mock-ITL-Ms": "10", "X-Mock-Output-Tokens": "20"}
    before = httpx.get(server.url + "/health").json()["direct_writes"]
    response = httpx.post(server.url + CHAT, content=chat(), headers=headers)
    assert response.status_code == 200 and response.text.endswith("data: [DONE]\n\n")
    written = httpx.get(server.url + "/health").json()["direct_writes"] - before
    # every read after the first went out from the upstream's callback, unless it came while
    # the task was busy; with the fast path off this is 0
    assert 0 < written <= 21, written
