"""``Upstream`` against the real mock (``http://``), and the h1client over TLS against a local
``https://`` server whose certificate comes from a CA made in the test (trustme)."""

from __future__ import annotations

import asyncio
import ssl
import threading

import httpx
import orjson
import pytest
import trustme

from relay.config import RelayConfig
from relay.errors import UpstreamStatus, from_transport
from relay.exchange import Exchange
from relay.h1client import H1Pool, TLSError
from relay.metrics import Metrics
from relay.upstream import Upstream
from relaybench.errors import UsageError


def make_upstream(url: str, **settings) -> Upstream:
    config = RelayConfig(upstream_url=url, max_retries=0, pool_max_keepalive=4, **settings)
    return Upstream(config, Metrics())


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


def test_streams_reuses_and_maps_statuses(mock, kit):
    async def main():
        upstream = make_upstream(mock.url)
        try:
            headers = upstream.headers(True, "req-1", [(b"x-mock-seed", b"7")])
            reference = make_upstream(mock.url)
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


SSE_ANSWER = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    b"%x\r\n%s\r\n0\r\n\r\n"
)
EVENTS = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\ndata: [DONE]\n\n'


class TLSUpstream:
    """An https server on 127.0.0.1 (own thread and loop) answering every request with EVENTS,
    keep-alive; ``names``: the hostnames its certificate is for."""

    def __init__(self, ca: trustme.CA, names: tuple[str, ...] = ("127.0.0.1",)) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*names).configure_cert(self.context)
        self.connections = 0
        self.requests = 0
        self.handshake_failures = 0
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(5)
        self.url = f"https://127.0.0.1:{self.port}"

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.context)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                self.requests += 1
                writer.write(SSE_ANSWER % (len(EVENTS), EVENTS))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_upstream(ca):
    made: list[TLSUpstream] = []

    def make(names: tuple[str, ...] = ("127.0.0.1",)) -> TLSUpstream:
        made.append(TLSUpstream(ca, names))
        return made[-1]

    yield make
    for server in made:
        server.close()


def test_https_upstream_through_the_one_pool_verified_against_the_test_ca(
    tls_upstream, ca, tmp_path, kit
):
    server = tls_upstream()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    async def main():
        upstream = make_upstream(server.url, upstream_ca_file=ca_file)
        try:
            headers = upstream.headers(True, "req-1", [])
            for _ in range(2):
                status, body = await fetch(upstream, headers, kit)
                assert status == 200 and body == EVENTS
            assert upstream.pool_state() == {"total": 1, "idle": 1, "busy": 0}  # reused
        finally:
            await upstream.close()

    asyncio.run(main())
    assert server.connections == 1 and server.requests == 2


@pytest.mark.parametrize("trusted", [False, True], ids=["unknown-ca", "other-hostname"])
def test_https_upstream_refused_without_its_ca_or_for_another_name(tls_upstream, ca, trusted):
    server = tls_upstream(("relay-upstream.example",) if trusted else ("127.0.0.1",))

    async def main():
        context = ssl.create_default_context()  # the system's trust store
        if trusted:
            ca.configure_trust(context)  # the chain is fine, the name is not
        pool = H1Pool(
            server.url,
            max_connections=2,
            max_keepalive=2,
            keepalive_expiry=4.0,
            connect_timeout=5.0,
            write_timeout=5.0,
            pool_timeout=5.0,
            ssl_context=context,
        )
        try:
            with pytest.raises(TLSError) as caught:
                await pool.request(b"POST", b"/v1/chat/completions", [], b"{}")
        finally:
            await pool.aclose()
        return caught.value

    error = asyncio.run(main())
    assert "certificate verify failed" in str(error)
    assert not from_transport(error).retryable
    assert from_transport(error).code == "upstream_tls_error"
    assert server.requests == 0  # nothing (no key, no prompt) went to the impostor


def test_relay_with_an_https_upstream_and_its_ca_file(
    start_server, tls_upstream, ca, tmp_path, kit
):
    server = tls_upstream()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    flags = ("--upstream-url", server.url, "--auth", "off")
    env = {"RELAY_ANON_PLAN": "unlimited", "RELAY_LOG_LEVEL": "warning"}
    trusting = start_server("relay", *flags, "--upstream-ca-file", str(ca_file), env=env)
    response = httpx.post(trusting.url + "/v1/chat/completions", content=kit.chat())
    assert response.status_code == 200 and response.content == EVENTS
    default = start_server("relay", *flags, env=env)  # the system store does not know the CA
    refused = httpx.post(default.url + "/v1/chat/completions", content=kit.chat())
    assert refused.status_code == 502
    assert refused.json()["error"]["code"] == "upstream_tls_error"
    assert server.requests == 1


def test_a_ca_file_that_cannot_be_read_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="--upstream-ca-file"):
        make_upstream("https://127.0.0.1:1", upstream_ca_file=tmp_path / "missing.pem")
    with pytest.raises(UsageError, match="only for an https"):
        make_upstream("http://127.0.0.1:1", upstream_ca_file=tmp_path / "missing.pem")
