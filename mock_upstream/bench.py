"""``make bench-mock``: how many chunks per second the mock emits, how on time, at what CPU cost.

Two clients drive the mock in turn, both counting on the mock's own figures (``/mock/stats``,
reset after a warm-up) and on its processes' CPU time:

- ``lazy``: deliberately lean and polite, non-blocking sockets sending one pre-built HTTP/1.1
  request each, drained by one ``epoll`` poll per 10 ms tick, counting content chunks in the raw
  bytes (no HTTP library, no JSON). A reader blocked in ``epoll_wait`` is woken by every chunk
  the mock writes and preempts it on a small machine; the tick avoids that, so this row measures
  the mock's own cost.
- ``eager``: ``wrk`` (C, one thread, epoll) with a Lua request body, reading every chunk the
  moment it arrives, as browsers and Locust do. Each write then wakes a reader, which costs the
  mock more per chunk; this is the figure the issue's targets are about.

Every row prints content chunks per second, emission lateness p50/p99/max, the mock's CPU % and
CPU µs per chunk (1e6 / that = chunks/s one core could carry), the share of time it waited for a
CPU while runnable and its involuntary context switches per second (how much the machine, not
the mock, delayed it), RSS per stream, the client's CPU %, and the targets (issue 16: at most
25 µs per chunk, i.e. 40,000 chunks/s on one core; lateness p99 <= 2 ms at 20,000 chunks/s;
``--workers 2`` carrying >= 1.7x one worker) as met, missed or n/a. The last eager rows run the
same offered load on one worker and on ``--workers 2`` (CPU summed over the workers).

The whole run takes about 90 s. The figures are indicative: on a shared machine other processes
take CPU too; ``cpus`` and the load average are printed with them.
"""

from __future__ import annotations

import argparse
import os
import resource
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

import httpx
import orjson
import psutil

from relaybench.procs import ServerProcess, owned_child, owned_command

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


TARGET_US_PER_CHUNK = 25.0  # = 40,000 chunks/s on one core
TARGET_LATE_P99_MS = 2.0
TARGET_LATE_AT = 20_000  # chunks/s offered for the lateness target (judged within 10 %)
TARGET_WORKERS_RATIO = 1.7


def _runq_wait_s(pid: int) -> float:
    """Seconds the process spent runnable but waiting for a CPU (Linux schedstat; 0 if absent)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


class _Mock:
    """The mock's processes (the first and its worker copies), their figures summed."""

    def __init__(self, server: ServerProcess) -> None:
        assert server.pid is not None
        self.server = server
        first = psutil.Process(server.pid)
        self.procs = [first, *first.children()]

    def cpu(self) -> float:
        return sum(sum(p.cpu_times()[:2]) for p in self.procs)

    def switches(self) -> int:
        return sum(p.num_ctx_switches().involuntary for p in self.procs)

    def waited(self) -> float:
        return sum(_runq_wait_s(p.pid) for p in self.procs)

    def rss(self) -> int:
        return sum(p.memory_info().rss for p in self.procs)


def _window(
    client: httpx.Client,
    url: str,
    mock: _Mock,
    duration: float,
    run: Callable[[float], None],
    client_cpu: Callable[[], float],
) -> dict[str, float]:
    """Reset the mock's stats, let ``run(until)`` drive it for ``duration``, and measure."""
    client.post(url + "/mock/reset")
    mock_cpu0, switches0, waited0 = mock.cpu(), mock.switches(), mock.waited()
    own_cpu0 = client_cpu()
    t0 = time.monotonic()
    run(t0 + duration)
    elapsed = time.monotonic() - t0
    stats = client.get(url + "/mock/stats").json()
    mock_cpu = mock.cpu() - mock_cpu0
    late = stats["lateness_ms"]
    return {
        "chunks_per_s": stats["chunks"] / elapsed,
        "late_p50": late["p50"],
        "late_p99": late["p99"],
        "late_max": late["max"],
        "late_min": late["min"],
        "mock_cpu": 100 * mock_cpu / elapsed,
        "us_per_chunk": 1e6 * mock_cpu / max(1, stats["chunks"]),
        "preempt_per_s": (mock.switches() - switches0) / elapsed,
        "runq_wait": 100 * (mock.waited() - waited0) / elapsed,
        "client_cpu": 100 * (client_cpu() - own_cpu0) / elapsed,
    }


def _settle(client: httpx.Client, url: str) -> None:
    """Let the mock notice the disconnects before the next level."""
    for _ in range(300):
        if client.get(url + "/mock/stats").json()["active_streams"] == 0:
            return
        time.sleep(0.02)


def _lazy(
    client: httpx.Client, url: str, streams: int, warmup: float, duration: float, mock: _Mock
) -> dict[str, float]:
    host, _, port = url.removeprefix("http://").rpartition(":")
    conns = _Client(host, int(port))
    rss_before = mock.rss()
    begin = time.monotonic()
    try:
        for i in range(streams):  # spread over half the warm-up so deadlines do not coincide
            conns.run_until(begin + (warmup / 2) * i / streams)
            conns.open_one()
        conns.run_until(begin + warmup)
        chunks0 = conns.chunks
        t0 = time.monotonic()
        row = _window(client, url, mock, duration, conns.run_until, time.process_time)
        row["client_chunks_per_s"] = (conns.chunks - chunks0) / (time.monotonic() - t0)
        rss = mock.rss()
    finally:
        conns.close()
    _settle(client, url)
    row["rss_kib_per_stream"] = max(0, rss - rss_before) / 1024 / streams
    row["rss_mib"] = rss / 2**20
    return row


_LUA = """wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
"""


def _eager(
    client: httpx.Client, url: str, streams: int, warmup: float, duration: float, mock: _Mock
) -> dict[str, float]:
    """``wrk`` holds ``streams`` connections, each asking again as soon as its stream ends."""
    rss_before = mock.rss()
    with (
        tempfile.NamedTemporaryFile("w", suffix=".lua") as script,
        tempfile.TemporaryFile() as errors,
    ):
        script.write(_LUA % _BODY.decode())
        script.flush()
        length = warmup + duration + 5  # stopped by us once measured
        cmd = ["wrk", "-t1", f"-c{streams}", f"-d{length:.0f}s", "--timeout", f"{length:.0f}s"]
        wrk = subprocess.Popen(  # owned: it ends with us, even if we are killed
            owned_command([*cmd, "-s", script.name, url + "/v1/chat/completions"]),
            stdout=subprocess.DEVNULL,
            stderr=errors,
            **owned_child(),
        )
        try:
            proc = psutil.Process(wrk.pid)  # the launcher execs wrk: the same process
            time.sleep(warmup)
            if wrk.poll() is not None:
                errors.seek(0)
                raise RuntimeError(f"wrk exited early: {errors.read().decode().strip()}")

            def sleep_until(until: float) -> None:
                time.sleep(max(0.0, until - time.monotonic()))

            row = _window(
                client, url, mock, duration, sleep_until, lambda: sum(proc.cpu_times()[:2])
            )
            rss = mock.rss()
        finally:
            wrk.terminate()
            wrk.wait(10)
    _settle(client, url)
    row["client_chunks_per_s"] = float("nan")  # wrk counts responses, not chunks
    row["rss_kib_per_stream"] = max(0, rss - rss_before) / 1024 / streams
    row["rss_mib"] = rss / 2**20
    return row


def _targets(row: dict[str, float], one_worker: dict[str, float] | None) -> str:
    """The issue's targets for this row: met, missed, or n/a (this row cannot show it)."""
    out = []
    if row["workers"] == 1:
        us = row["us_per_chunk"]
        verdict = "met" if us <= TARGET_US_PER_CHUNK else "missed"
        out.append(f"<= {TARGET_US_PER_CHUNK:g} us/chunk (40k/s per core) {verdict}")
    if abs(row["offered"] - TARGET_LATE_AT) <= 0.1 * TARGET_LATE_AT:
        verdict = "met" if row["late_p99"] <= TARGET_LATE_P99_MS else "missed"
        out.append(f"p99 <= {TARGET_LATE_P99_MS:g} ms at 20k/s {verdict}")
    if row["workers"] > 1 and one_worker is not None:
        ratio = row["chunks_per_s"] / max(1.0, one_worker["chunks_per_s"])
        verdict = "met" if ratio >= TARGET_WORKERS_RATIO else "missed"
        if one_worker["chunks_per_s"] >= 0.9 * one_worker["offered"]:
            verdict = "n/a: one worker kept up with this load"
        out.append(
            f"workers {row['workers']} >= {TARGET_WORKERS_RATIO:g}x one: {ratio:.2f}x {verdict}"
        )
    return "; ".join(out) or "-"


def _table_head() -> str:
    head = (
        f"{'client':>6} {'workers':>7} {'streams':>7} {'offered':>8} {'chunks/s':>9} "
        f"{'client/s':>9} {'late min':>9} {'late p50':>9} {'late p99':>9} {'late max':>9} "
        f"{'mock cpu':>9} {'µs/chunk':>8} {'runq wait':>9} {'preempt/s':>9} {'KiB/strm':>9} "
        f"{'mock rss':>9} {'client cpu':>10}  targets"
    )
    return head + "\n" + "-" * len(head)


def _line(r: dict[str, float], targets: str) -> str:
    client_rate = (
        "-"
        if r["client_chunks_per_s"] != r["client_chunks_per_s"]
        else (f"{r['client_chunks_per_s']:.0f}")
    )
    return (
        f"{r['client']:>6} {r['workers']:>7} {r['streams']:>7} {r['offered']:>8.0f} "
        f"{r['chunks_per_s']:>9.0f} {client_rate:>9} "
        f"{r['late_min']:>7.3f}ms {r['late_p50']:>7.3f}ms {r['late_p99']:>7.3f}ms "
        f"{r['late_max']:>7.2f}ms "
        f"{r['mock_cpu']:>8.0f}% {r['us_per_chunk']:>8.1f} {r['runq_wait']:>8.1f}% "
        f"{r['preempt_per_s']:>9.0f} {r['rss_kib_per_stream']:>9.1f} {r['rss_mib']:>7.1f}Mi "
        f"{r['client_cpu']:>9.0f}%  {targets}"
    )


def _levels(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mock_upstream.bench", description=__doc__)
    p.add_argument("--streams", default="100,500,1000", help="lazy-client levels, comma-separated")
    p.add_argument("--eager-streams", default="400,2000", help="eager-client (wrk) levels")
    p.add_argument(
        "--workers-streams",
        type=int,
        default=2000,
        help="the eager level also run on --workers 2 (0: skip)",
    )
    p.add_argument("--itl-ms", type=float, default=20.0)
    p.add_argument("--output-tokens", type=int, default=400)
    p.add_argument("--warmup-s", type=float, default=2.0)
    p.add_argument("--duration-s", type=float, default=8.0, help="measured seconds per level")
    args = p.parse_args(argv)
    eager_levels = _levels(args.eager_streams)
    if (eager_levels or args.workers_streams) and shutil.which("wrk") is None:
        print(
            "error: wrk is needed for the eager rows: python tools/ensure_binaries.py",
            file=sys.stderr,
        )
        return 2
    # thousands of sockets on each side: the mock and wrk inherit this limit
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    flags = ["--ttft-ms", "10", "--ttft-dist", "uniform", "--ttft-spread-ms", "10"]
    flags += ["--itl-ms", str(args.itl_ms), "--output-tokens", str(args.output_tokens)]
    per_stream = 1000 / args.itl_ms
    print(
        f"mock: python -m mock_upstream {' '.join(flags)}; offered = streams x {per_stream:g} "
        f"chunks/s; {args.warmup_s:g} s warm-up, {args.duration_s:g} s measured per level; "
        f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f}"
    )
    plan: list[tuple[str, int, int]] = [("lazy", 1, n) for n in _levels(args.streams)]
    plan += [("eager", 1, n) for n in eager_levels]
    if args.workers_streams:
        if args.workers_streams not in eager_levels:
            plan.append(("eager", 1, args.workers_streams))
        plan.append(("eager", 2, args.workers_streams))
    print(_table_head(), flush=True)
    one_worker: dict[int, dict[str, float]] = {}
    for workers in sorted({w for _, w, _ in plan}):
        cmd = ["-m", "mock_upstream", "--host", "127.0.0.1", "--port", "0", "--workers"]
        with ServerProcess("mock_upstream", [*cmd, str(workers), *flags]) as server:
            mock = _Mock(server)
            with httpx.Client(timeout=10) as client:
                for kind, w, n in plan:
                    if w != workers:
                        continue
                    drive = _lazy if kind == "lazy" else _eager
                    row = drive(client, server.url, n, args.warmup_s, args.duration_s, mock)
                    row.update(client=kind, workers=w, streams=n, offered=n * per_stream)
                    if kind == "eager" and w == 1:
                        one_worker[n] = row
                    print(_line(row, _targets(row, one_worker.get(n))), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
