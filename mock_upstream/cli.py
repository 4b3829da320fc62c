"""``relaybench mock`` / ``python -m mock_upstream``: flags -> MockConfig -> uvicorn.

Readiness is announced with exactly one stdout line, ``listening on http://H:P``, carrying the
real port (we bind the socket ourselves, so ``--port 0`` works). SIGINT/SIGTERM stop the server:
open streams get ``--shutdown-grace-s`` to finish, then their connections are closed; exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import socket
import sys
from collections.abc import Sequence

import uvicorn
import uvloop

from mock_upstream.app import build_app
from mock_upstream.config import MockConfig
from mock_upstream.errors import ConnectionCut
from mock_upstream.faults import VALID_RATE_KINDS, FaultSyntaxError, parse_rate
from mock_upstream.latency import DISTRIBUTIONS, Distribution
from relaybench.errors import UsageError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="relaybench mock",
        description="Mock OpenAI-compatible SSE upstream with seeded latency, load model, "
        "faults and x_mock_emitted_ns stamps on every chunk.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    dists = ", ".join(DISTRIBUTIONS)
    g = p.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    g.add_argument("--port", type=int, default=8001, help="0: the OS chooses")
    g.add_argument("--model", default="mock-gpt", help="model id when a request names none")
    g.add_argument("--seed", type=int, default=0, help="base seed of every random draw")
    g.add_argument(
        "--shutdown-grace-s",
        type=float,
        default=3.0,
        help="on SIGTERM, open streams get this long, then are closed",
    )
    g = p.add_argument_group("latency (distributions: " + dists + ")")
    g.add_argument("--ttft-ms", type=float, default=200.0, help="time to first token: mean")
    g.add_argument(
        "--ttft-dist", choices=DISTRIBUTIONS, default="constant", help="TTFT distribution"
    )
    g.add_argument(
        "--ttft-spread-ms",
        type=float,
        default=0.0,
        help="uniform: half-width; normal/lognormal: standard deviation",
    )
    g.add_argument("--itl-ms", type=float, default=20.0, help="inter-token latency: mean")
    g.add_argument("--itl-dist", choices=DISTRIBUTIONS, default="constant", help="ITL distribution")
    g.add_argument("--itl-spread-ms", type=float, default=0.0, help="like --ttft-spread-ms")
    g.add_argument(
        "--prefill-ms-per-token",
        type=float,
        default=0.0,
        help="added to TTFT per prompt token (prompt tokens ~ characters / 4)",
    )
    g = p.add_argument_group("output")
    g.add_argument("--output-tokens", type=float, default=100.0, help="output length: mean")
    g.add_argument(
        "--output-dist", choices=DISTRIBUTIONS, default="constant", help="length distribution"
    )
    g.add_argument("--output-spread", type=float, default=0.0, help="like --ttft-spread-ms")
    g.add_argument(
        "--output-from-max-tokens",
        action="store_true",
        help="answer exactly max_tokens tokens when a request sets it",
    )
    g.add_argument(
        "--tokens-per-chunk", type=int, default=1, help="tokens batched into one content chunk"
    )
    g.add_argument("--crlf", action="store_true", help="end SSE lines with CRLF")
    g.add_argument(
        "--keepalive-ms",
        type=float,
        default=0.0,
        help="send ': keep-alive' comment lines every N ms (0: never)",
    )
    g = p.add_argument_group("load model")
    g.add_argument(
        "--max-concurrency",
        type=int,
        default=0,
        help="generations at once; more wait in a FIFO queue (0: unlimited)",
    )
    g.add_argument(
        "--max-queue",
        type=int,
        default=None,
        help="queued requests beyond this get 429 (None: unbounded)",
    )
    g.add_argument("--retry-after-s", type=int, default=1, help="Retry-After of 429 answers")
    g.add_argument(
        "--slowdown-per-stream",
        type=float,
        default=0.0,
        help="ITL x (1 + F x max(0, active - --slowdown-after)): a batching server",
    )
    g.add_argument(
        "--slowdown-after", type=int, default=0, help="active generations before slowdown starts"
    )
    g = p.add_argument_group("faults")
    g.add_argument(
        "--fault-rate",
        action="append",
        default=[],
        metavar="KIND=P",
        help=f"seeded fault probability per request, repeatable; KIND: "
        f"{VALID_RATE_KINDS} (e.g. status:429=0.01 disconnect=0.005)",
    )
    return p


def config_from_args(args: argparse.Namespace) -> MockConfig:
    checks = [
        (args.ttft_ms >= 0 and args.ttft_spread_ms >= 0, "--ttft-ms/--ttft-spread-ms must be >= 0"),
        (args.itl_ms >= 0 and args.itl_spread_ms >= 0, "--itl-ms/--itl-spread-ms must be >= 0"),
        (args.output_tokens >= 1 and args.output_spread >= 0, "--output-tokens must be >= 1"),
        (args.tokens_per_chunk >= 1, "--tokens-per-chunk must be >= 1"),
        (args.max_concurrency >= 0, "--max-concurrency must be >= 0"),
        (args.max_queue is None or args.max_queue >= 0, "--max-queue must be >= 0"),
        (args.keepalive_ms >= 0, "--keepalive-ms must be >= 0"),
        (args.prefill_ms_per_token >= 0, "--prefill-ms-per-token must be >= 0"),
        (args.slowdown_per_stream >= 0, "--slowdown-per-stream must be >= 0"),
        (0 <= args.port <= 65535, "--port must be 0-65535"),
        (args.retry_after_s >= 0, "--retry-after-s must be >= 0"),
        (args.shutdown_grace_s >= 0, "--shutdown-grace-s must be >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    try:
        rates = tuple(parse_rate(text) for text in args.fault_rate)
    except FaultSyntaxError as exc:
        raise UsageError(f"--fault-rate: {exc}") from None
    return MockConfig(
        host=args.host,
        port=args.port,
        model=args.model,
        seed=args.seed,
        ttft_ms=Distribution(args.ttft_dist, args.ttft_ms, args.ttft_spread_ms),
        itl_ms=Distribution(args.itl_dist, args.itl_ms, args.itl_spread_ms),
        output_tokens=Distribution(args.output_dist, args.output_tokens, args.output_spread),
        use_max_tokens=args.output_from_max_tokens,
        prefill_ms_per_token=args.prefill_ms_per_token,
        tokens_per_chunk=args.tokens_per_chunk,
        max_concurrency=args.max_concurrency,
        max_queue=args.max_queue,
        retry_after_s=args.retry_after_s,
        slowdown_per_stream=args.slowdown_per_stream,
        slowdown_after=args.slowdown_after,
        crlf=args.crlf,
        keepalive_ms=args.keepalive_ms,
        fault_rates=rates,
        shutdown_grace_s=args.shutdown_grace_s,
    )


class _QuietCuts(logging.Filter):
    """Drop uvicorn's error record for a deliberate cut (the ``disconnect-after`` fault)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ConnectionCut))


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


async def _serve(server: uvicorn.Server, sock: socket.socket, url: str) -> None:
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.005)
    if server.started:
        print(f"listening on {url}", flush=True)
    await task


def serve(config: MockConfig) -> int:
    sock = _bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    uv_config = uvicorn.Config(
        build_app(config),
        http="httptools",
        loop="none",
        lifespan="off",
        access_log=False,
        proxy_headers=False,  # nothing to trust on loopback; saves a wrapper on every send
        log_level="warning",
        timeout_graceful_shutdown=config.shutdown_grace_s,
        backlog=4096,
    )
    logging.getLogger("uvicorn.error").addFilter(_QuietCuts())
    server = uvicorn.Server(uv_config)
    # uvicorn re-raises a captured SIGINT/SIGTERM once it has shut down; make that a no-op so a
    # clean stop exits 0 instead of dying by the signal.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    # Everything built so far lives as long as the process: keep it out of the collector's
    # full passes (measured under bench-mock: the one full collection went from ~46 to ~22 ms
    # of CPU, a pause every open stream would otherwise feel as lateness).
    gc.freeze()
    try:
        uvloop.run(_serve(server, sock, f"http://{shown}:{port}"))
    finally:
        sock.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return serve(config_from_args(args))
