"""``make bench-mock``: how many chunks per second one mock process emits, and how on time.

Starts the mock as a subprocess with a short inter-token latency, holds 100, 500 and 1000
concurrent streams open against it with a lean client (raw asyncio protocols on uvloop sending a
pre-built HTTP/1.1 request, counting content chunks in the bytes: no HTTP library, no JSON), and
for each level prints: content chunks per second, the mock's emission lateness p50/p99/max (from
``/mock/stats``, reset after a warm-up), the mock's CPU % and RSS per stream, and this client's
CPU % (near 100 % means the client, not the mock, was the limit).

The whole run takes about 40 s. The figures are indicative: on a shared machine other processes
take CPU too; ``cpus`` and the load average are printed with them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections.abc import Sequence

import orjson
import psutil
import uvloop

from relaybench.procs import ServerProcess

_MARK = b'"delta":{"content":"'  # starts every content chunk (never the role chunk)
_DONE = b"data: [DONE]"
_BODY = orjson.dumps(
    {"model": "bench", "stream": True, "messages": [{"role": "user", "content": "bench"}]}
)


def _request(host: str, port: int) -> bytes:
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s:%d\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (host.encode(), port, len(_BODY), _BODY)
    )


class _Stream(asyncio.Protocol):
    """One keep-alive connection that always has a stream open: at ``[DONE]`` it asks again."""

    def __init__(self, request: bytes, counter: list[int]) -> None:
        self.request = request
        self.counter = counter
        self.carry = b""
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buf = self.carry + data
        self.counter[0] += buf.count(_MARK)
        if _DONE in buf:
            self.carry = b""
            assert self.transport is not None
            self.transport.write(self.request)
        else:
            self.carry = buf[-(len(_DONE) - 1) :]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def _get_json(host: str, port: int, method: str, path: str) -> dict:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % (
        method.encode(), path.encode()))  # fmt: skip
    raw = await reader.read()
    writer.close()
    return orjson.loads(raw.partition(b"\r\n\r\n")[2])


async def _level(
    host: str, port: int, streams: int, warmup: float, duration: float, mock: psutil.Process
) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    counter = [0]
    request = _request(host, port)
    conns: list[_Stream] = []
    rss_before = mock.memory_info().rss
    begin = loop.time()
    for i in range(streams):  # spread over half the warm-up so deadlines do not all coincide
        await asyncio.sleep(max(0.0, begin + (warmup / 2) * i / streams - loop.time()))
        _, proto = await loop.create_connection(lambda: _Stream(request, counter), host, port)
        conns.append(proto)
    await asyncio.sleep(warmup / 2)
    await _get_json(host, port, "POST", "/mock/reset")
    counted0 = counter[0]
    mock_cpu0 = sum(mock.cpu_times()[:2])
    own_cpu0 = time.process_time()
    t0 = time.monotonic()
    await asyncio.sleep(duration)
    elapsed = time.monotonic() - t0
    counted = counter[0] - counted0
    mock_cpu = sum(mock.cpu_times()[:2]) - mock_cpu0
    own_cpu = time.process_time() - own_cpu0
    stats = await _get_json(host, port, "GET", "/mock/stats")
    rss = mock.memory_info().rss
    for conn in conns:
        assert conn.transport is not None
        conn.transport.close()
    await asyncio.gather(*(c.closed for c in conns))
    for _ in range(200):  # let the mock notice the disconnects before the next level
        if (await _get_json(host, port, "GET", "/mock/stats"))["active_streams"] == 0:
            break
        await asyncio.sleep(0.02)
    late = stats["lateness_ms"]
    return {
        "streams": streams,
        "chunks_per_s": stats["chunks"] / elapsed,
        "client_chunks_per_s": counted / elapsed,
        "late_p50": late["p50"],
        "late_p99": late["p99"],
        "late_max": late["max"],
        "mock_cpu": 100 * mock_cpu / elapsed,
        "rss_kib_per_stream": max(0, rss - rss_before) / 1024 / streams,
        "rss_mib": rss / 2**20,
        "client_cpu": 100 * own_cpu / elapsed,
    }


def _table(rows: list[dict[str, float]]) -> str:
    head = (
        f"{'streams':>7} {'chunks/s':>9} {'client/s':>9} {'late p50':>9} {'late p99':>9} "
        f"{'late max':>9} {'mock cpu':>9} {'KiB/strm':>9} {'mock rss':>9} {'client cpu':>10}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['streams']:>7} {r['chunks_per_s']:>9.0f} {r['client_chunks_per_s']:>9.0f} "
            f"{r['late_p50']:>7.3f}ms {r['late_p99']:>7.3f}ms {r['late_max']:>7.2f}ms "
            f"{r['mock_cpu']:>8.0f}% {r['rss_kib_per_stream']:>9.1f} {r['rss_mib']:>7.1f}Mi "
            f"{r['client_cpu']:>9.0f}%"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mock_upstream.bench", description=__doc__)
    p.add_argument("--streams", default="100,500,1000", help="comma-separated levels")
    p.add_argument("--itl-ms", type=float, default=20.0)
    p.add_argument("--output-tokens", type=int, default=400)
    p.add_argument("--warmup-s", type=float, default=2.0)
    p.add_argument("--duration-s", type=float, default=8.0, help="measured seconds per level")
    args = p.parse_args(argv)
    levels = [int(x) for x in args.streams.split(",")]
    flags = ["--ttft-ms", "10", "--ttft-dist", "uniform", "--ttft-spread-ms", "10"]
    flags += ["--itl-ms", str(args.itl_ms), "--output-tokens", str(args.output_tokens)]
    cmd = ["-m", "mock_upstream", "--host", "127.0.0.1", "--port", "0", *flags]
    print(f"mock: python {' '.join(cmd)}")
    print(
        f"offered: streams x 1000/{args.itl_ms:g} chunks/s; {args.warmup_s:g} s warm-up, "
        f"{args.duration_s:g} s measured per level; cpus={os.cpu_count()} "
        f"load={os.getloadavg()[0]:.2f}"
    )
    random.seed(0)
    with ServerProcess("mock_upstream", cmd) as server:
        host, _, port = server.url.removeprefix("http://").rpartition(":")
        assert server.pid is not None
        mock = psutil.Process(server.pid)
        print(f"mock pid {server.pid} (py-spy record -p {server.pid} to profile it)", flush=True)
        rows = []
        for n in levels:
            row = uvloop.run(_level(host, int(port), n, args.warmup_s, args.duration_s, mock))
            rows.append(row)
            print(_table(rows[-1:]).splitlines()[-1] if len(rows) > 1 else _table(rows), flush=True)
    offered = {n: n * 1000 / args.itl_ms for n in levels}
    print("offered chunks/s: " + ", ".join(f"{n}: {v:.0f}" for n, v in offered.items()))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
