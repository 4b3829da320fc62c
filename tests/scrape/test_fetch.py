"""A ``--scrape`` URL's credentials: sent as HTTP Basic to that endpoint, shown as ``***``, and
never carried to wherever it redirects; the whole-answer deadline against a trickling body."""

from __future__ import annotations

import base64
import ssl
import time
from pathlib import Path

import orjson
import pytest
import trustme

from relaybench import credentials
from relaybench.scrape import fetch
from relaybench.scrape.scraper import Scraper
from tests.hardening.tlsserver import TLSChatServer

from .fake_server import FakeEndpoint, TrickleEndpoint

BODY = "# TYPE up gauge\nup 1\n"


@pytest.fixture
def endpoints():
    started: list[FakeEndpoint] = []

    def start() -> FakeEndpoint:
        started.append(FakeEndpoint(BODY).start())
        return started[-1]

    yield start
    for endpoint in started:
        endpoint.stop()


def _with_userinfo(url: str, userinfo: str) -> str:
    return url.replace("http://", f"http://{userinfo}@", 1)


def test_credentials_are_sent_as_basic_auth_and_shown_as_stars(endpoints) -> None:
    endpoint = endpoints()
    url = _with_userinfo(endpoint.url, "me:p%40ss-0123")
    body, _ = fetch.get(url, 2.0)
    assert body.decode() == BODY
    sent = endpoint.headers[-1]["Authorization"]
    assert base64.b64decode(sent.removeprefix("Basic ")) == b"me:p@ss-0123"
    assert credentials.redact_url(url) == f"http://***@127.0.0.1:{endpoint.port}/metrics"


def test_a_redirect_does_not_carry_the_credentials_elsewhere(endpoints) -> None:
    elsewhere = endpoints()
    first = endpoints()
    first.redirect_to = elsewhere.url
    body, _ = fetch.get(_with_userinfo(first.url, "me:s3cret-xyz"), 2.0)
    assert body.decode() == BODY  # followed
    assert "Authorization" in first.headers[-1]
    assert "Authorization" not in elsewhere.headers[-1]


@pytest.fixture
def trickles():
    started: list[TrickleEndpoint] = []

    def start(head: bytes, piece: bytes, every_s: float, count: int | None) -> TrickleEndpoint:
        started.append(TrickleEndpoint(head, piece, every_s, count).start())
        return started[-1]

    yield start
    for endpoint in started:
        endpoint.stop()


def test_a_body_sent_slowly_is_cut_off_at_the_deadline(trickles) -> None:
    # 300 bytes, one every 20 ms: the whole body would take 6 s
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 300\r\n\r\n"
    endpoint = trickles(head, b"x", 0.02, 300)
    trickle_s = 300 * 0.02
    began = time.monotonic()
    with pytest.raises(fetch.FetchError, match=r"timeout: no whole answer within 0\.3 s"):
        fetch.get(endpoint.url, 0.3)
    took = time.monotonic() - began
    # at most the deadline plus one socket timeout (0.6 s); a read waiting for 64 KiB or the
    # end held it for the whole trickle
    assert took < trickle_s / 3


def test_an_endless_trickling_stream_is_gaps_and_one_warning(tmp_path: Path, trickles) -> None:
    endpoint = trickles(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n", b"# x\n", 0.2, None)
    warnings: list[str] = []
    path = tmp_path / "server" / "drip.metrics.jsonl"
    scraper = Scraper(tmp_path, interval_s=0.3, timeout_s=0.3, warn=warnings.append)
    scraper.add_prometheus("drip", endpoint.url)
    scraper.start()
    try:
        deadline = time.monotonic() + 10
        while not (path.exists() and path.read_bytes().count(b"\n") >= 2):
            assert time.monotonic() < deadline, "no gap written: the scrape was held"
            time.sleep(0.05)
    finally:
        scraper.stop()
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert len(rows) >= 2 and all("timeout" in r["gap"] for r in rows)
    assert len(warnings) == 1 and "timeout" in warnings[0]


def test_a_head_sent_slowly_is_cut_off_at_the_deadline(trickles) -> None:
    # one header line, a byte every 20 ms: the head would take 6 s, and each read is quick, so
    # the socket timeout alone never fires
    endpoint = trickles(b"HTTP/1.1 200 OK\r\nX-Pad: ", b"x", 0.02, 300)
    trickle_s = 300 * 0.02
    began = time.monotonic()
    with pytest.raises(fetch.FetchError, match=r"timeout: no whole answer within 0\.3 s"):
        fetch.get(endpoint.url, 0.3)
    assert time.monotonic() - began < trickle_s / 3  # held for the whole trickle without the cut


def test_a_body_without_a_length_cut_at_the_deadline_is_not_taken_as_whole(trickles) -> None:
    # HTTP/1.0 with no length: the cut reads as the end of the body, which would look complete
    endpoint = trickles(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n", b"# x\n", 0.02, 300)
    with pytest.raises(fetch.FetchError, match=r"timeout: no whole answer within 0\.3 s"):
        fetch.get(endpoint.url, 0.3)


def test_https_is_verified_and_goes_through_the_cut_off_connection(monkeypatch) -> None:
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    with TLSChatServer(ctx) as server:
        url = server.url + "/metrics"
        with pytest.raises(fetch.FetchError, match="CERTIFICATE_VERIFY_FAILED"):
            fetch.get(url, 2.0)  # a CA this machine does not trust: refused
        made = ssl.create_default_context

        def trusting() -> ssl.SSLContext:
            trusted = made()
            ca.configure_trust(trusted)
            return trusted

        monkeypatch.setattr(fetch.ssl, "create_default_context", trusting)
        # trusted: the handshake passes and the GET reaches the server (it answers POST only)
        with pytest.raises(fetch.FetchError, match="HTTP 501"):
            fetch.get(url, 2.0)
