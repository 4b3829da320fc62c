"""One HTTP GET with a deadline for the whole answer, not only for each socket read.

A metrics endpoint that trickles its status line, headers or body must not hold a scrape past
its interval. A timer (``_Cutoff``) shuts down every socket the request opened (a redirect opens
another) when ``timeout_s`` has passed since it started: the read blocked on it wakes at once, and
the fetch fails with a timeout whatever it was reading. The body is read one socket read at a time
(``read1``: whatever arrived, not a full piece), so a fast answer never waits for a full piece.
TLS is verified (``ssl.create_default_context()``, urllib's default). Credentials in a URL
(``https://user:pass@host/metrics``) are sent as HTTP Basic and never shown: messages print
``credentials.redact_url``.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import socket
import ssl
import threading
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from relaybench.credentials import redact_url
from relaybench.scrape.prom import clip

MAX_BODY = 16 * 2**20  # a /metrics page is kilobytes; this only bounds a misbehaving one
PIECE = 64 * 1024


class FetchError(Exception):
    """The scrape failed; the message says why (it becomes the gap's reason)."""


def _request(url: str) -> urllib.request.Request:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"{redact_url(url)} is not an http(s) URL")
    headers = {"Accept": "text/plain;version=0.0.4, application/json;q=0.5"}
    if parts.username is None and parts.password is None:
        return urllib.request.Request(url, headers=headers)
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    request = urllib.request.Request(urlunsplit(parts._replace(netloc=host)), headers=headers)
    # unredirected: urllib copies ordinary headers onto a redirect, to whatever host it names
    request.add_unredirected_header(
        "Authorization", "Basic " + base64.b64encode(pair.encode()).decode()
    )
    return request


class _Cutoff:
    """Shuts down the sockets it watches when the deadline passes; ``fired`` says it did."""

    def __init__(self, timeout_s: float) -> None:
        self.fired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(timeout_s, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if not self.fired:
                return
        _shut(sock)  # opened after the deadline (a redirect): cut at once

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)

    def cancel(self) -> None:
        self._timer.cancel()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed: nothing left to cut
        sock.shutdown(socket.SHUT_RDWR)


class _Watched(http.client.HTTPConnection):
    """A connection whose socket the request's ``_Cutoff`` watches once connected."""

    def __init__(self, *args: Any, cutoff: _Cutoff, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cutoff = cutoff

    def connect(self) -> None:
        super().connect()  # for HTTPS, after the TLS handshake: the socket reads go through
        self._cutoff.watch(self.sock)


class _WatchedHTTPS(_Watched, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, cutoff: _Cutoff) -> None:
        super().__init__()
        self._cutoff = cutoff

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_Watched, req, cutoff=self._cutoff)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, cutoff: _Cutoff) -> None:
        self._tls = ssl.create_default_context()  # verified: chain and host name
        super().__init__(context=self._tls)
        self._cutoff = cutoff

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_WatchedHTTPS, req, context=self._tls, cutoff=self._cutoff)


def get(url: str, timeout_s: float) -> tuple[bytes, str]:
    """The body and Content-Type of ``GET url``; ``FetchError`` on any failure or overrun."""
    request = _request(url)
    cutoff = _Cutoff(timeout_s)
    opener = urllib.request.build_opener(_HTTPHandler(cutoff), _HTTPSHandler(cutoff))
    try:
        with opener.open(request, timeout=timeout_s) as resp:
            pieces: list[bytes] = []
            size = 0
            while piece := resp.read1(PIECE):
                size += len(piece)
                if size > MAX_BODY:
                    raise FetchError(f"answer larger than {MAX_BODY // 2**20} MiB")
                pieces.append(piece)
            ctype = resp.headers.get("Content-Type", "")
        if cutoff.fired:  # a body without a length ends at the cut: short, not whole
            raise FetchError(f"timeout: no whole answer within {timeout_s:g} s")
        return b"".join(pieces), ctype
    except FetchError:
        raise
    except Exception as exc:
        raise _failure(exc, timeout_s, cutoff.fired) from None
    finally:
        cutoff.cancel()


def _failure(exc: Exception, timeout_s: float, cut: bool) -> Exception:
    """The ``FetchError`` that says why, or ``exc`` itself when it is not a fetch failure."""
    if cut:  # whatever the read that was cut raised
        return FetchError(f"timeout: no whole answer within {timeout_s:g} s")
    if isinstance(exc, urllib.error.HTTPError):
        return FetchError(f"HTTP {exc.code} {clip(str(exc.reason))}")
    if isinstance(exc, urllib.error.URLError):
        if isinstance(exc.reason, TimeoutError):
            return FetchError(f"timeout: no answer within {timeout_s:g} s")
        return FetchError(f"unreachable ({exc.reason})")
    if isinstance(exc, TimeoutError):
        return FetchError(f"timeout: no answer within {timeout_s:g} s")
    if isinstance(exc, ConnectionError):  # reset or refused mid-answer: the server went away
        return FetchError(f"connection lost ({type(exc).__name__}: {exc})")
    if isinstance(exc, OSError | ValueError | http.client.HTTPException):
        return FetchError(f"failed ({type(exc).__name__}: {exc})")  # bad status lines, ...
    return exc
