"""Hold N keep-alive streams against a local server for D seconds: a bare load for profiling.

``python -m tools.drive_streams --port P --streams 100 --duration 8`` opens N connections to
127.0.0.1:P, each sending one chat-completions stream after another (``stream: true``,
``max_tokens``) until the deadline, and prints the SSE events received (parsed by httptools,
decoded by ``relaybench.sse``). A stream that fails (not HTTP 200, cut, or not ended within
``SLACK_S`` of the deadline) ends the drive with its reason and exit 1. It measures nothing
itself: a light client with no records or timing, so a server's own CPU per chunk (from
``/proc/<pid>/stat``) or a py-spy profile can be read with little else on the cores, unlike
under ``make bench-relay``'s Locust. Loopback only, bounded in time."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import httptools

from relaybench.cliargs import port, positive_float, positive_int
from relaybench.errors import RelaybenchError
from relaybench.sse import SSEDecoder

SLACK_S = 10.0  # a stream started just before the deadline may take this long to finish


class _Stream:
    """httptools' callbacks for one response: its status, its SSE events, whether it ended."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.decoder = SSEDecoder()
        self.status = 0
        self.events = 0
        self.done = False

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.events += len(self.decoder.feed(body))

    def on_message_complete(self) -> None:
        self.done = True


def request(max_tokens: int) -> bytes:
    body = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,'
    body += b'"max_tokens":%d}' % max_tokens
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )


async def stream_until(port_: int, deadline: float, req: bytes) -> int:
    """One connection's SSE events, streams back to back until ``deadline`` (monotonic)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port_)
    events = 0
    try:
        while time.monotonic() < deadline:
            writer.write(req)
            stream = _Stream()
            while not stream.done:
                data = await reader.read(65536)
                if not data:
                    raise RelaybenchError("the server closed the connection mid-stream")
                stream.parser.feed_data(data)
            if stream.status != 200:
                raise RelaybenchError(f"the server answered HTTP {stream.status}, not a stream")
            events += stream.events
    except httptools.HttpParserError as exc:
        raise RelaybenchError(f"the server's answer is not HTTP/1.1 ({exc})") from None
    finally:
        writer.close()
    return events


async def drive(port_: int, streams: int, duration_s: float, max_tokens: int) -> int:
    """All the connections' events; ``RelaybenchError`` if a stream fails or outruns the slack."""
    deadline = time.monotonic() + duration_s
    req = request(max_tokens)
    try:
        async with asyncio.timeout(duration_s + SLACK_S):
            counts = await asyncio.gather(
                *(stream_until(port_, deadline, req) for _ in range(streams))
            )
    except TimeoutError:
        raise RelaybenchError(
            f"a stream did not end within {SLACK_S:g} s of the {duration_s:g} s run"
        ) from None
    except OSError as exc:
        raise RelaybenchError(f"cannot reach 127.0.0.1:{port_} ({exc.strerror or exc})") from None
    return sum(counts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.drive_streams", description=__doc__)
    p.add_argument("--port", type=port, required=True, help="the server's port on 127.0.0.1")
    p.add_argument("--streams", type=positive_int, default=100)
    p.add_argument("--duration", type=positive_float, default=8.0, help="seconds")
    p.add_argument("--max-tokens", type=positive_int, default=50)
    args = p.parse_args(argv)
    try:
        events = asyncio.run(drive(args.port, args.streams, args.duration, args.max_tokens))
    except RelaybenchError as exc:
        print(f"drive_streams: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"data events {events}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
