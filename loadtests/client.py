"""Each user's HTTP client: geventhttpclient, one keep-alive connection, opened before use.

Kept apart from ``loadtests.user`` (which imports Locust, and with it gevent's monkey-patching)
so that it can be tested in any process.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from geventhttpclient import HTTPClient

if TYPE_CHECKING:
    from loadtests.user import LoadContext


def open_client(ctx: LoadContext) -> HTTPClient:
    """A client for the context's target, its connection already open (see ``open_connection``)."""
    cfg = ctx.config
    http = HTTPClient(
        ctx.host,
        ctx.port,
        ssl=ctx.ssl,
        concurrency=1,
        connection_timeout=cfg.connect_timeout_s,
        network_timeout=cfg.timeout_s,
        insecure=True,
    )
    open_connection(http)
    return http


def open_connection(http: HTTPClient) -> None:
    """Open the client's keep-alive connection before its first measured request.

    A new geventhttpclient connection resolves its host in gevent's thread pool, even a numeric
    one: 2-10 ms measured on loopback, which landed in every user's first TTFT and in no later
    one. TTFT is measured on a warm connection, as a front end with keep-alive sees it; a
    connection that fails now is recorded by the first request, as ``connect``.
    """
    pool = http._connection_pool  # no public way to pre-connect
    with contextlib.suppress(OSError):
        pool.return_socket(pool.get_socket())
