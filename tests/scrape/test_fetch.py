"""A ``--scrape`` URL's credentials: sent as HTTP Basic to that endpoint, shown as ``***``, and
never carried to wherever it redirects."""

from __future__ import annotations

import base64

import pytest

from relaybench import credentials
from relaybench.scrape import fetch

from .fake_server import FakeEndpoint

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
