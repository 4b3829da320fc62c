"""``Upstream`` over both of its clients, against the real mock: the h1client (``http://``) and
httpx (used for ``https://``; forced here onto the mock's plain http so it stays exercised)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from relay.config import RelayConfig
from relay.errors import UpstreamStatus
from relay.exchange import Exchange
from relay.metrics import Metrics
from relay.upstream import Upstream, _httpx_client


def make_upstream(url: str, client: str) -> Upstream:
    config = RelayConfig(upstream_url=url, max_retries=0, pool_max_keepalive=4)
    upstream = Upstream(config, Metrics())
    assert upstream.pool is not None  # an http:// upstream gets the h1client
    if client == "httpx":
        upstream.pool = None
        upstream.client = _httpx_client(config)
    return upstream


def text_of(kit, body: bytes) -> list[str]:
    """The streamed text and final markers (ids and time stamps differ per request)."""
    out = []
    for data in kit.sse_data(body):
        if data == "[DONE]":
            out.append(data)
            continue
        chunk = orjson.loads(data)
        if chunk["choices"]:
            out.append(chunk["choices"][0]["delta"].get("content") or "")
        else:
            out.append(f"usage {chunk['usage']['completion_tokens']}")
    return out


async def fetch(upstream: Upstream, headers: list[tuple[bytes, bytes]], kit) -> tuple[int, bytes]:
    exchange = Exchange(first_token_s=5.0, idle_s=5.0)
    try:
        response, _ = await upstream.open(kit.chat(), headers, exchange, {})
    finally:
        exchange.finish()
    try:
        return response.status_code, b"".join([part async for part in response.aiter_raw()])
    finally:
        await response.aclose()


@pytest.mark.parametrize("client", ["h1", "httpx"])
def test_both_clients_stream_the_same_bytes_and_map_statuses_alike(mock, kit, client):
    async def main():
        upstream = make_upstream(mock.url, client)
        try:
            headers = upstream.headers(True, "req-1", [(b"x-mock-seed", b"7")])
            reference = make_upstream(mock.url, "h1")
            try:
                expected = await fetch(reference, headers, kit)
            finally:
                await reference.close()
            assert expected[0] == 200 and text_of(kit, expected[1])[-1] == "[DONE]"
            assert len(text_of(kit, expected[1])) > 3  # role, text chunks, usage, [DONE]
            for _ in range(2):
                status, body = await fetch(upstream, headers, kit)
                assert status == 200 and text_of(kit, body) == text_of(kit, expected[1])
            assert upstream.pool_state() == {"total": 1, "idle": 1, "busy": 0}  # reused
            limited = upstream.headers(True, "req-2", [(b"x-mock-fault", b"status:429")])
            with pytest.raises(UpstreamStatus) as caught:
                await fetch(upstream, limited, kit)
            assert caught.value.status == 429 and caught.value.retry_after_s is not None
            assert upstream.pool_state()["busy"] == 0
        finally:
            await upstream.close()

    asyncio.run(main())
