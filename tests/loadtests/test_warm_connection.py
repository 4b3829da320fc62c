"""Each user opens its keep-alive connection before its first measured request."""

from __future__ import annotations

import socket

import pytest
from geventhttpclient import HTTPClient

from loadtests.client import open_connection


def test_connection_is_open_before_any_request() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(5)
        http = HTTPClient("127.0.0.1", server.getsockname()[1])
        open_connection(http)
        conn, _ = server.accept()  # connected before any request
        with conn, pytest.raises(TimeoutError):  # open, and not a byte sent: it waits
            conn.settimeout(0.2)
            conn.recv(1)
        assert http._connection_pool._socket_queue.qsize() == 1  # kept for that request
        http.close()


def test_a_refused_connection_is_left_for_the_first_request_to_record() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: connections are refused
        http = HTTPClient("127.0.0.1", port)
        open_connection(http)  # must not raise
        assert http._connection_pool._socket_queue.qsize() == 0
        http.close()
