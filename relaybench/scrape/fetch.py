"""One HTTP GET with a deadline for the whole answer, not only for each socket read.

A metrics endpoint that trickles its body must not hold a scrape past its interval: the body is
read one socket read at a time (``read1``: whatever arrived, not a full piece) and the request
given up at the first read that ends after ``timeout_s`` has passed since it started. Each read
also has ``timeout_s`` as its socket timeout, so a server that goes silent just before the
deadline holds the scrape at most one socket timeout past it (``2 × timeout_s`` in all). The
status line and headers are read by ``http.client`` under the socket timeout only. TLS is
verified (urllib's default context). Credentials in a URL (``https://user:pass@host/metrics``)
are sent as HTTP Basic and never shown: messages print ``credentials.redact_url``.
"""

from __future__ import annotations

import base64
import time
import urllib.error
import urllib.request
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


def get(url: str, timeout_s: float) -> tuple[bytes, str]:
    """The body and Content-Type of ``GET url``; ``FetchError`` on any failure or overrun."""
    request = _request(url)
    deadline = time.monotonic() + timeout_s
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            pieces: list[bytes] = []
            size = 0
            while piece := resp.read1(PIECE):
                size += len(piece)
                if size > MAX_BODY:
                    raise FetchError(f"answer larger than {MAX_BODY // 2**20} MiB")
                if time.monotonic() > deadline:
                    raise FetchError(f"timeout: no whole answer within {timeout_s:g} s")
                pieces.append(piece)
            return b"".join(pieces), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        raise FetchError(f"HTTP {exc.code} {clip(str(exc.reason))}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise FetchError(f"timeout: no answer within {timeout_s:g} s") from None
        raise FetchError(f"unreachable ({reason})") from None
    except TimeoutError:
        raise FetchError(f"timeout: no answer within {timeout_s:g} s") from None
    except ConnectionError as exc:  # reset or refused mid-answer: the server went away
        raise FetchError(f"connection lost ({type(exc).__name__}: {exc})") from None
    except (OSError, ValueError) as exc:  # reset connections, bad status lines, ...
        raise FetchError(f"failed ({type(exc).__name__}: {exc})") from None
