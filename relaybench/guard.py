"""Slow and oversized requests, cut off: the HTTP/1.1 protocol under both servers.

uvicorn bounds how long a keep-alive connection may sit idle between requests, and nothing
else: a client may take forever to send a request's headers or body, or send megabytes of
headers (a slowloris holds a socket per connection; enough of them take every descriptor). Both
servers run uvicorn's httptools protocol through ``relaybench.serve``; ``protocol(limits)`` is
that protocol with these limits (``ServeOptions.http_protocol``):

- ``header_timeout_s``: a request's line and headers must have arrived this long after its
  first byte (or, for a connection's first request, after the connection opened). Else
  ``408 Request Timeout`` and the connection is closed; a connection that never sent a byte is
  closed without an answer.
- ``body_timeout_s``: its body must have arrived this long after its headers. Else ``408`` (if
  no response has started) and close; the app's ``receive()`` sees a disconnect.
- ``max_header_bytes``: the request line and headers together; more is
  ``431 Request Header Fields Too Large`` and close, counted as the bytes arrive, so a header
  line that never ends costs at most this much memory (plus one socket read).
- ``max_headers``: header lines; more is ``431`` and close.
- A request httptools cannot parse gets uvicorn's own ``400`` and close, as before.
- ``max_connections``: connections this process holds open (idle keep-alive ones included).
  A connection beyond it is answered ``503 Service Unavailable`` (``retry-after: 1``) as soon as
  it is accepted, before it sends anything, and closed: a flood of idle sockets cannot take
  every descriptor, a client beyond the cap learns so at once instead of hanging, and the
  connections already open (their streams, their next keep-alive requests) are untouched.
  ``None`` (the default): ``default_max_connections``, from ``RLIMIT_NOFILE`` less
  ``FD_RESERVE``, divided by the descriptors one connection costs (the relay: two, the client's
  and its upstream's). With ``--workers N`` each process has its own cap (and its own limit).

Every refusal is one JSON error in OpenAI's shape, with ``connection: close``. The connection
then closes its sending side and reads and drops whatever the client still sends for at most
``LINGER_S`` before closing: a client still writing would otherwise get a reset that can destroy
the answer before it reads it. At most ``MAX_LINGERING`` connections linger at once (more are
closed at once), so refusals too hold a bounded number of descriptors.

uvicorn's ``limit_concurrency`` is not used: it decides only once a request's headers are
complete (an idle socket holds its descriptor until then), answers ``text/plain``, and counts
every open connection, so at the limit it refuses the next request of an established keep-alive
client as well.

This reaches into uvicorn's ``HttpToolsProtocol``: the parser callbacks (``on_message_begin``,
``on_url``, ``on_header``, ``on_headers_complete``, ``on_message_complete``), the transport
events (``connection_made``, ``data_received``, ``connection_lost``), ``send_400_response``
(called with the parser's error; a callback that raises ends up there), and the attributes
``transport``, ``cycle``, ``logger``, ``loop``, ``url``, ``flow``, ``client``.
``tests/hardening/test_guard_hooks.py`` fails when any of these changes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
from dataclasses import dataclass, replace
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from relaybench.cliargs import positive_float, positive_int

_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}
_KINDS = {408: "timeout", 503: "server_error"}  # else invalid_request_error
# uvicorn logs "Invalid HTTP request received." for any parser error, ours included; while a
# refusal of ours goes through that path its logger is this silent one, and we log our own line.
_SILENT = logging.getLogger("relaybench.guard.silent")
_SILENT.propagate = False
_SILENT.disabled = True
log = logging.getLogger("relaybench.guard")
LINGER_S = 1.0
MAX_LINGERING = 32  # refused connections lingering at once; more are closed without lingering
FULL_LOG_EVERY_S = 10.0  # at the cap, one log line per this (a flood would write thousands)
FD_RESERVE = 32 + MAX_LINGERING  # listening socket, logs, pipes, Redis, files; lingering ones


def default_max_connections(fds_per_connection: int = 1) -> int:
    """The connection cap when none is given: what ``RLIMIT_NOFILE`` (soft) leaves after
    ``FD_RESERVE``, in connections of ``fds_per_connection`` descriptors; at least 1."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(1, (soft - FD_RESERVE) // fds_per_connection)


@dataclass(frozen=True)
class GuardLimits:
    """Per-request limits; durations in seconds (see the module docstring)."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_header_bytes: int = 65536
    max_headers: int = 100
    max_connections: int | None = None  # None: protocol() derives it (default_max_connections)

    def __post_init__(self) -> None:
        names = ["header_timeout_s", "body_timeout_s", "max_header_bytes", "max_headers"]
        if self.max_connections is not None:
            names.append("max_connections")
        for name in names:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")


class _Counts:
    """Connections of one server (one protocol class from ``protocol()``), in this process."""

    def __init__(self) -> None:
        self.admitted = 0  # open and under the cap
        self.lingering = 0  # refused, draining before the close
        self.logged_at: float | None = None  # loop time of the last "at the cap" log line


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a request we refuse."""


def refusal(status: int, message: str) -> bytes:
    """A complete ``connection: close`` response with an OpenAI-shaped JSON error."""
    kind = _KINDS.get(status, "invalid_request_error")
    body = orjson.dumps({"error": {"message": message, "type": kind, "code": status}})
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        + ("retry-after: 1\r\n" if status == 503 else "")
        + "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with ``limits``; subclass per server via ``protocol()``."""

    limits = GuardLimits(max_connections=default_max_connections())
    _counts = _Counts()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._admitted = False  # counted in _counts.admitted until the connection is lost
        self._timer: asyncio.TimerHandle | None = None
        self._in_headers = False  # between a request's first byte and the end of its headers
        self._got_bytes = False  # of the request now being read
        self._header_bytes = 0  # raw bytes received while in the headers
        self._header_size = 0  # request line plus header names and values
        self._header_count = 0
        self._refusing: tuple[int, str] | None = None
        self._lingering = False

    # -- timers -------------------------------------------------------------------------------

    def _arm(self, seconds: float, status: int, message: str) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._expired, status, message)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self, status: int, message: str) -> None:
        self._timer = None
        if self.transport.is_closing() or self._lingering:
            return
        if self._in_headers and not self._got_bytes:
            self.transport.close()  # never said anything: nothing to answer
            return
        self._refuse(status, message)

    # -- refusing -----------------------------------------------------------------------------

    def _refuse(self, status: int, message: str, *, quiet: bool = False) -> None:
        """Answer ``status`` unless a response already started, then close the connection."""
        cycle = self.cycle
        answer = cycle is None or cycle.response_complete or not cycle.response_started
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's receive() returns http.disconnect now
            cycle.message_event.set()
        if not quiet:
            log.info("%s %s from %s: %s", status, _REASONS[status], self.client, message)
        self._disarm()
        if not answer:
            self.transport.close()
            return
        self.transport.write(refusal(status, message))
        if self._counts.lingering >= MAX_LINGERING or not self.transport.can_write_eof():
            self.transport.close()  # written first, then closed
            return
        self.transport.write_eof()
        self._lingering = True
        self._counts.lingering += 1
        self.flow.resume_reading()
        self._timer = self.loop.call_later(LINGER_S, self.transport.close)

    def _refuse_in_parser(self, status: int, message: str) -> None:
        """From a parser callback: stop the parser; ``send_400_response`` answers."""
        self._refusing = (status, message)
        self.logger = _SILENT
        raise _Refused(message)

    def send_400_response(self, msg: str) -> None:
        self.logger = logging.getLogger("uvicorn.error")
        refusing, self._refusing = self._refusing, None
        if refusing is None:
            super().send_400_response(msg)
            self._disarm()
        else:
            self._refuse(*refusing)

    # -- transport events ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        counts, cap = self._counts, self.limits.max_connections
        assert cap is not None  # protocol() resolves it
        if counts.admitted >= cap:
            now = self.loop.time()
            if counts.logged_at is None or now - counts.logged_at >= FULL_LOG_EVERY_S:
                counts.logged_at = now
                log.warning("%d connections open (the cap): new ones get 503 until some close", cap)
            self._refuse(503, f"server at its connection limit ({cap}); retry shortly", quiet=True)
            return
        counts.admitted += 1
        self._admitted = True
        self._in_headers = True
        self._arm(self.limits.header_timeout_s, 408, "request headers took too long")

    def data_received(self, data: bytes) -> None:
        if self._lingering or self.transport.is_closing():
            return  # refused: dropped until we close
        if self._in_headers:
            self._got_bytes = True
        super().data_received(data)
        if self._in_headers and not self._lingering and not self.transport.is_closing():
            self._header_bytes += len(data)  # a header block still open after this read
            if self._header_bytes > self.limits.max_header_bytes:
                self._refuse(431, f"request headers exceed {self.limits.max_header_bytes} bytes")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        counts = self._counts
        if self._admitted:
            self._admitted = False
            counts.admitted -= 1
        if self._lingering:
            self._lingering = False
            counts.lingering -= 1
        super().connection_lost(exc)

    # -- parser callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._got_bytes = True
        self._header_bytes = self._header_size = self._header_count = 0
        if not self._in_headers:  # a keep-alive request: its header clock starts now
            self._in_headers = True
            self._arm(self.limits.header_timeout_s, 408, "request headers took too long")

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._header_size += len(url)
        self._check_size()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            self._refuse_in_parser(431, f"more than {self.limits.max_headers} request headers")
        self._header_size += len(name) + len(value) + 4
        self._check_size()
        super().on_header(name, value)

    def _check_size(self) -> None:
        if self._header_size > self.limits.max_header_bytes:
            limit = self.limits.max_header_bytes
            self._refuse_in_parser(431, f"request headers exceed {limit} bytes")

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._arm(self.limits.body_timeout_s, 408, "request body took too long")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()


def protocol(
    limits: GuardLimits,
    base: type[HttpToolsProtocol] = HttpToolsProtocol,
    *,
    fds_per_connection: int = 1,
) -> type:
    """A protocol class for ``ServeOptions.http_protocol``: ``base`` with ``limits``, its own
    connection counts, and ``max_connections`` derived if unset (``fds_per_connection``)."""
    if limits.max_connections is None:
        limits = replace(limits, max_connections=default_max_connections(fds_per_connection))
    bases = (GuardedProtocol,) if base is HttpToolsProtocol else (GuardedProtocol, base)
    return type(f"Guarded{base.__name__}", bases, {"limits": limits, "_counts": _Counts()})


def connection_cap(value: str) -> int | None:
    """``--max-connections``: a positive count, or ``auto`` (None: derived)."""
    if value == "auto":
        return None
    if not value.strip().isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'auto', got {value!r}")
    return int(value)


def add_arguments(parser: Any) -> None:
    """The limits as flags on a parser or argument group (the mock's; the relay has them in its
    ``RELAY_*`` table)."""
    d = GuardLimits()
    parser.add_argument(
        "--header-timeout-s", type=positive_float, default=d.header_timeout_s,
        help="a request's line and headers must arrive within this, else 408 and close",
    )  # fmt: skip
    parser.add_argument(
        "--body-timeout-s", type=positive_float, default=d.body_timeout_s,
        help="a request's body must arrive within this after its headers, else 408 and close",
    )  # fmt: skip
    parser.add_argument(
        "--max-header-bytes", type=positive_int, default=d.max_header_bytes,
        help="request line and headers larger than this: 431 and close",
    )  # fmt: skip
    parser.add_argument(
        "--max-headers", type=positive_int, default=d.max_headers,
        help="more header lines than this: 431 and close",
    )  # fmt: skip
    parser.add_argument(
        "--max-connections", type=connection_cap, default=None, metavar="N|auto",
        help="open connections; more get 503 at once and are closed (default auto: "
        f"RLIMIT_NOFILE less {FD_RESERVE}, now {default_max_connections()})",
    )  # fmt: skip


def limits_from_args(args: argparse.Namespace) -> GuardLimits:
    return GuardLimits(
        header_timeout_s=args.header_timeout_s,
        body_timeout_s=args.body_timeout_s,
        max_header_bytes=args.max_header_bytes,
        max_headers=args.max_headers,
        max_connections=args.max_connections,
    )
