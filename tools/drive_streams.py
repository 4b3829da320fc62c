"""Hold N keep-alive streams against a local server for D seconds: a bare load for profiling.

``python -m tools.drive_streams --port P --streams 100 --duration 8`` opens N connections to
127.0.0.1:P, each sending one chat-completions stream after another (``stream: true``,
``max_tokens``) until the deadline, and prints the SSE data events received. It measures
nothing itself: with no per-request client work it lets a server's own CPU per chunk (from
``/proc/<pid>/stat``) or a py-spy profile be read without the load generator's share, which
``make bench-relay`` includes in the machine it shares. Loopback only, bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from relaybench.cliargs import port, positive_float, positive_int

END = b"0\r\n\r\n"


def request(max_tokens: int) -> bytes:
    body = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,'
    body += b'"max_tokens":%d}' % max_tokens
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )


async def stream_until(port_: int, deadline: float, req: bytes) -> int:
    """One connection's data events, streams back to back until ``deadline`` (monotonic)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port_)
    events = 0
    try:
        while time.monotonic() < deadline:
            writer.write(req)
            tail = b""
            while not tail.endswith(END):
                data = await reader.read(65536)
                if not data:
                    raise ConnectionError("the server closed the connection mid-stream")
                events += data.count(b"data: ")
                tail = (tail + data)[-len(END) :]
    finally:
        writer.close()
    return events


async def drive(port_: int, streams: int, duration_s: float, max_tokens: int) -> int:
    deadline = time.monotonic() + duration_s
    req = request(max_tokens)
    counts = await asyncio.gather(*(stream_until(port_, deadline, req) for _ in range(streams)))
    return sum(counts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.drive_streams", description=__doc__)
    p.add_argument("--port", type=port, required=True, help="the server's port on 127.0.0.1")
    p.add_argument("--streams", type=positive_int, default=100)
    p.add_argument("--duration", type=positive_float, default=8.0, help="seconds")
    p.add_argument("--max-tokens", type=positive_int, default=50)
    args = p.parse_args(argv)
    events = asyncio.run(drive(args.port, args.streams, args.duration, args.max_tokens))
    print(f"data events {events}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
