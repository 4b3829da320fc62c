"""The servers' defaults agree: a relay started with no flags reaches a mock started with none."""

from __future__ import annotations

from urllib.parse import urlsplit

from mock_upstream.cli import build_parser as mock_parser
from relay.config import RelayConfig, parse_config


def test_the_relays_default_upstream_is_the_mocks_default_address():
    mock = mock_parser().parse_args([])
    upstream = urlsplit(parse_config([], {}).upstream_url)
    assert (upstream.hostname, upstream.port) == (mock.host, mock.port)
    assert RelayConfig().upstream_url == parse_config([], {}).upstream_url
