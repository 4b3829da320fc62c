"""``make bench-mock``: how many chunks per second one mock process emits, and how on time.

Starts the mock as a subprocess with a short inter-token latency, holds 100, 500 and 1000
concurrent streams open against it, and for each level prints: content chunks per second, the
mock's emission lateness p50/p99/max (from ``/mock/stats``, reset after a warm-up), the mock's
CPU % and CPU µs per chunk (1e6 / that = chunks/s one core could carry), the share of time it
waited for a CPU while runnable and its involuntary context switches per second (how much the
machine, not the mock, delayed it), RSS per stream, and this client's CPU % (near 100 % means
the client was the limit).

The client is deliberately lean and polite: non-blocking sockets sending one pre-built HTTP/1.1
request each, drained by one ``epoll`` poll per 10 ms tick, counting content chunks in the raw
bytes (no HTTP library, no JSON). Polling on a tick rather than blocking on the sockets matters
on a small machine: a reader blocked in ``epoll_wait`` is woken by every chunk the mock writes and
preempts it, so the benchmark would measure the ping-pong, not the mock.

The whole run takes about 40 s. The figures are indicative: on a shared machine other processes
take CPU too; ``cpus`` and the load average are printed with them.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import sys
import time
from collections.abc import Sequence

import httpx
import orjson
import psutil

from relaybench.procs import ServerProcess

_MARK = b'"delta":{"content":"'  # starts every content chunk (never the role chunk)
_DONE = b"data: [DONE]"
_CARRY = max(len(_MARK), len(_DONE)) - 1  # bytes kept so a marker split across reads is seen
_BODY = orjson.dumps(
    {"model": "bench", "stream": True, "messages": [{"role": "user", "content": "bench"}]}
)
_TICK_S = 0.01


def _request(host: str, port: int) -> bytes:
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s:%d\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (host.encode(), port, len(_BODY), _BODY)
    )


class _Client:
    """Keep-alive connections that always have a stream open: at ``[DONE]`` each asks again."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.request = _request(host, port)
        self.poller = select.epoll()
        self.socks: dict[int, socket.socket] = {}
        self.carry: dict[int, bytes] = {}
        self.chunks = 0
        self.restarts = 0

    def open_one(self) -> None:
        sock = socket.create_connection(self.address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        sock.send(self.request)
        fd = sock.fileno()
        self.socks[fd] = sock
        self.carry[fd] = b""
        self.poller.register(fd, select.EPOLLIN)

    def pump(self) -> None:
        """Read whatever has arrived on every ready socket (no waiting)."""
        for fd, _ in self.poller.poll(0):
            try:
                data = self.socks[fd].recv(1 << 18)
            except BlockingIOError:
                continue
            if not data:
                raise RuntimeError("the mock closed a benchmark stream")
            buf = self.carry[fd] + data
            self.chunks += buf.count(_MARK)
            if _DONE in buf:
                self.carry[fd] = b""
                self.socks[fd].send(self.request)
                self.restarts += 1
            else:
                self.carry[fd] = buf[-_CARRY:]

    def run_until(self, deadline: float) -> None:
        """Pump once per tick, on absolute tick times, until ``deadline`` (monotonic)."""
        tick = time.monotonic()
        while tick < deadline:
            self.pump()
            tick += _TICK_S
            delay = tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def close(self) -> None:
        for sock in self.socks.values():
            sock.close()
        self.poller.close()


def _runq_wait_s(pid: int) -> float:
    """Seconds the process spent runnable but waiting for a CPU (Linux schedstat; 0 if absent)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def _level(
    client: httpx.Client,
    url: str,
    streams: int,
    warmup: float,
    duration: float,
    mock: psutil.Process,
) -> dict[str, float]:
    host, _, port = url.removeprefix("http://").rpartition(":")
    conns = _Client(host, int(port))
    rss_before = mock.memory_info().rss
    begin = time.monotonic()
    try:
        for i in range(streams):  # spread over half the warm-up so deadlines do not coincide
            conns.run_until(begin + (warmup / 2) * i / streams)
            conns.open_one()
        conns.run_until(begin + warmup)
        client.post(url + "/mock/reset")
        chunks0 = conns.chunks
        mock_cpu0 = sum(mock.cpu_times()[:2])
        switches0 = mock.num_ctx_switches().involuntary
        waited0 = _runq_wait_s(mock.pid)
        own_cpu0 = time.process_time()
        t0 = time.monotonic()
        conns.run_until(t0 + duration)
        elapsed = time.monotonic() - t0
        counted = conns.chunks - chunks0
        mock_cpu = sum(mock.cpu_times()[:2]) - mock_cpu0
        switches = mock.num_ctx_switches().involuntary - switches0
        waited = _runq_wait_s(mock.pid) - waited0
        own_cpu = time.process_time() - own_cpu0
        stats = client.get(url + "/mock/stats").json()
        rss = mock.memory_info().rss
    finally:
        conns.close()
    for _ in range(200):  # let the mock notice the disconnects before the next level
        if client.get(url + "/mock/stats").json()["active_streams"] == 0:
            break
        time.sleep(0.02)
    late = stats["lateness_ms"]
    return {
        "streams": streams,
        "chunks_per_s": stats["chunks"] / elapsed,
        "client_chunks_per_s": counted / elapsed,
        "late_p50": late["p50"],
        "late_p99": late["p99"],
        "late_max": late["max"],
        "late_min": late["min"],
        "mock_cpu": 100 * mock_cpu / elapsed,
        "us_per_chunk": 1e6 * mock_cpu / max(1, stats["chunks"]),
        "preempt_per_s": switches / elapsed,
        "runq_wait": 100 * waited / elapsed,
        "rss_kib_per_stream": max(0, rss - rss_before) / 1024 / streams,
        "rss_mib": rss / 2**20,
        "client_cpu": 100 * own_cpu / elapsed,
    }


def _table(rows: list[dict[str, float]]) -> str:
    head = (
        f"{'streams':>7} {'chunks/s':>9} {'client/s':>9} {'late min':>9} {'late p50':>9} "
        f"{'late p99':>9} "
        f"{'late max':>9} {'mock cpu':>9} {'µs/chunk':>8} {'runq wait':>9} {'preempt/s':>9} "
        f"{'KiB/strm':>9} "
        f"{'mock rss':>9} "
        f"{'client cpu':>10}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['streams']:>7} {r['chunks_per_s']:>9.0f} {r['client_chunks_per_s']:>9.0f} "
            f"{r['late_min']:>7.3f}ms {r['late_p50']:>7.3f}ms {r['late_p99']:>7.3f}ms "
            f"{r['late_max']:>7.2f}ms "
            f"{r['mock_cpu']:>8.0f}% {r['us_per_chunk']:>8.1f} {r['runq_wait']:>8.1f}% "
            f"{r['preempt_per_s']:>9.0f} "
            f"{r['rss_kib_per_stream']:>9.1f} "
            f"{r['rss_mib']:>7.1f}Mi "
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
    with ServerProcess("mock_upstream", cmd) as server:
        assert server.pid is not None
        mock = psutil.Process(server.pid)
        print(f"mock pid {server.pid} (py-spy record -p {server.pid} to profile it)", flush=True)
        rows = []
        with httpx.Client(timeout=10) as client:
            for n in levels:
                rows.append(_level(client, server.url, n, args.warmup_s, args.duration_s, mock))
                table = _table(rows)
                print(table if len(rows) == 1 else table.splitlines()[-1], flush=True)
    offered = {n: n * 1000 / args.itl_ms for n in levels}
    print("offered chunks/s: " + ", ".join(f"{n}: {v:.0f}" for n, v in offered.items()))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
