"""Each user's HTTP client: geventhttpclient, one keep-alive connection, opened before use.

Kept apart from ``loadtests.user`` (which imports Locust, and with it gevent's monkey-patching)
so that it can be tested in any process.

TLS is verified, the certificate chain and the host name, against the system's CAs or the
``--ca-file`` PEM (``LoadConfig.ca_file``); ``--insecure`` turns both checks off. One
``SSLContext`` per process serves every user (building one costs milliseconds of CPU).

A failed connect (refused, unreachable, a certificate refused) is followed by a pause before the
user's next request: ``CONNECT_PAUSE_FIRST_S`` after the first, doubling with each failure in a
row, at most ``CONNECT_PAUSE_MAX_S``; a request that connects resets it. A wrong address or
certificate so costs each user a handful of attempts, not hundreds a second. The pause comes
after the record is written, so it is in no request's latency.
"""

from __future__ import annotations

import contextlib
import functools
import ssl
from typing import TYPE_CHECKING

import gevent
import gevent.ssl
from geventhttpclient import HTTPClient

from relaybench import records

if TYPE_CHECKING:
    from loadtests.user import LoadContext

CONNECT_PAUSE_FIRST_S = 0.1
CONNECT_PAUSE_MAX_S = 2.0


def open_client(ctx: LoadContext) -> HTTPClient:
    """A client for the context's target, its connection already open (see ``open_connection``)."""
    cfg = ctx.config
    tls = tls_context(cfg.ca_file, cfg.insecure) if ctx.ssl else None
    http = HTTPClient(
        ctx.host,
        ctx.port,
        ssl=ctx.ssl,
        concurrency=1,
        connection_timeout=cfg.connect_timeout_s,
        network_timeout=cfg.timeout_s,
        ssl_context_factory=(lambda **_: tls) if tls is not None else None,
        insecure=cfg.insecure,  # geventhttpclient sets check_hostname = not insecure
    )
    open_connection(http)
    return http


@functools.cache
def tls_context(ca_file: str | None, insecure: bool) -> ssl.SSLContext:
    """The process's client context: the system's CAs, or only those of ``ca_file``."""
    context = gevent.ssl.create_default_context(cafile=ca_file)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


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


def describe(exc: BaseException) -> str:
    """A record's ``error_detail`` for a transport exception; TLS failures say so first."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: certificate verify failed: {exc.verify_message or exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def connect_pause_s(failures: int) -> float:
    """The pause after the ``failures``-th connect error in a row (1-based)."""
    return min(CONNECT_PAUSE_MAX_S, CONNECT_PAUSE_FIRST_S * 2 ** (failures - 1))


class ConnectBackoff:
    """One user's pause after connect errors (the module docstring gives the schedule)."""

    def __init__(self) -> None:
        self.failures = 0

    def after(self, error: str | None) -> None:
        """Called with each finished request's error type; sleeps after a connect error."""
        if error != records.CONNECT:
            self.failures = 0
            return
        self.failures += 1
        gevent.sleep(connect_pause_s(self.failures))
