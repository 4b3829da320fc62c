"""``relaybench mock`` / ``python -m mock_upstream``: flags -> MockConfig -> uvicorn.

Start-up is ``relaybench.serve``: one stdout line ``listening on http://H:P`` with the real port
(``--port 0`` works); SIGINT/SIGTERM stop the server: open streams get ``--shutdown-grace-s`` to
finish, then their connections are closed; exit 0.

``--workers N`` runs N processes on one port (SO_REUSEPORT), copies of this command started by
``relaybench.serve``; ``mock_upstream.peers`` makes their stats and request logs one.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import logging
import shutil
import sys
import tempfile
from collections.abc import Sequence

import relaybench.serve
from mock_upstream.app import build_app
from mock_upstream.config import MockConfig
from mock_upstream.errors import ConnectionCut
from mock_upstream.faults import VALID_RATE_KINDS, FaultSyntaxError, parse_rate
from mock_upstream.latency import DISTRIBUTIONS, Distribution
from mock_upstream.state import MockState
from relaybench import guard
from relaybench.cliargs import (
    Parser,
    bounded,
    non_negative_float,
    non_negative_int,
    port,
    positive_int,
)
from relaybench.errors import UsageError
from relaybench.serve import ServeOptions
from relaybench.wire import WireProtocol

at_least_one = bounded(1)


def build_parser() -> Parser:
    p = Parser(
        prog="relaybench mock",
        description="Mock OpenAI-compatible SSE upstream with seeded latency, load model, "
        "faults and x_mock_emitted_ns stamps on every chunk.",
    )
    dists = ", ".join(DISTRIBUTIONS)
    g = p.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    g.add_argument("--port", type=port, default=8001, help="0: the OS chooses")
    g.add_argument("--model", default="mock-gpt", help="model id when a request names none")
    g.add_argument("--seed", type=int, default=0, help="base seed of every random draw")
    g.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="processes sharing the port (SO_REUSEPORT); /mock/stats, /mock/requests and "
        "/mock/reset answer for all of them",
    )
    # set by the first process on the copies it starts (mock_upstream.peers)
    g.add_argument("--peer-dir", default=None, help=argparse.SUPPRESS)
    g.add_argument("--worker-index", type=non_negative_int, default=0, help=argparse.SUPPRESS)
    g.add_argument(
        "--shutdown-grace-s",
        type=non_negative_float,
        default=3.0,
        help="on SIGTERM, open streams get this long, then are closed",
    )
    guard.add_arguments(p.add_argument_group("request limits (slow or oversized clients)"))
    g = p.add_argument_group("latency (distributions: " + dists + ")")
    g.add_argument(
        "--ttft-ms", type=non_negative_float, default=200.0, help="time to first token: mean"
    )
    g.add_argument(
        "--ttft-dist", choices=DISTRIBUTIONS, default="constant", help="TTFT distribution"
    )
    g.add_argument(
        "--ttft-spread-ms",
        type=non_negative_float,
        default=0.0,
        help="uniform: half-width; normal/lognormal: standard deviation",
    )
    g.add_argument(
        "--itl-ms", type=non_negative_float, default=20.0, help="inter-token latency: mean"
    )
    g.add_argument("--itl-dist", choices=DISTRIBUTIONS, default="constant", help="ITL distribution")
    g.add_argument(
        "--itl-spread-ms", type=non_negative_float, default=0.0, help="like --ttft-spread-ms"
    )
    g.add_argument(
        "--prefill-ms-per-token",
        type=non_negative_float,
        default=0.0,
        help="added to TTFT per prompt token (prompt tokens ~ characters / 4)",
    )
    g = p.add_argument_group("output")
    g.add_argument("--output-tokens", type=at_least_one, default=100.0, help="output length: mean")
    g.add_argument(
        "--output-dist", choices=DISTRIBUTIONS, default="constant", help="length distribution"
    )
    g.add_argument(
        "--output-spread", type=non_negative_float, default=0.0, help="like --ttft-spread-ms"
    )
    g.add_argument(
        "--output-from-max-tokens",
        action="store_true",
        help="answer exactly max_tokens tokens when a request sets it",
    )
    g.add_argument(
        "--tokens-per-chunk",
        type=positive_int,
        default=1,
        help="tokens batched into one content chunk",
    )
    g.add_argument("--crlf", action="store_true", help="end SSE lines with CRLF")
    g.add_argument(
        "--keepalive-ms",
        type=non_negative_float,
        default=0.0,
        help="send ': keep-alive' comment lines every N ms (0: never)",
    )
    g = p.add_argument_group("load model")
    g.add_argument(
        "--max-concurrency",
        type=non_negative_int,
        default=0,
        help="generations at once; more wait in a FIFO queue (0: unlimited)",
    )
    g.add_argument(
        "--max-queue",
        type=non_negative_int,
        default=None,
        help="queued requests beyond this get 429 (unset: unbounded)",
    )
    g.add_argument(
        "--retry-after-s", type=non_negative_int, default=1, help="Retry-After of 429 answers"
    )
    g.add_argument(
        "--slowdown-per-stream",
        type=non_negative_float,
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
        limits=guard.limits_from_args(args),
        workers=args.workers,
        peer_dir=args.peer_dir,
        worker_index=args.worker_index,
    )


class _QuietCuts(logging.Filter):
    """Drop uvicorn's error record for a deliberate cut (the ``disconnect-after`` fault)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ConnectionCut))


def serve(config: MockConfig, argv: Sequence[str] = ()) -> int:
    """Serve ``config``; with ``--workers N`` also start the N-1 copies (``argv`` + their place)."""
    logging.getLogger("uvicorn.error").addFilter(_QuietCuts())
    first = config.workers > 1 and config.peer_dir is None
    if first:
        config = dataclasses.replace(config, peer_dir=tempfile.mkdtemp(prefix="relaybench-mock-"))
    copies = itertools.count(1)

    def worker_argv(port: int) -> list[str]:
        place = ["--peer-dir", str(config.peer_dir), "--worker-index", str(next(copies))]
        return ["-m", "mock_upstream", *argv, "--port", str(port), *place]

    def service() -> relaybench.serve.Service:  # built inside the event loop
        state = MockState(config)
        app = build_app(config, state)
        if state.peers is None:
            return relaybench.serve.Service(app)
        listening = asyncio.ensure_future(state.peers.listen(state.answer))

        async def aclose() -> None:
            (await listening).close()

        return relaybench.serve.Service(app, aclose=aclose)

    options = ServeOptions(
        host=config.host,
        port=config.port,
        workers=config.workers if first else 1,
        reuse_port=config.workers > 1,
        worker_argv=worker_argv,
        grace_s=config.shutdown_grace_s,
        proxy_headers=False,  # nothing to trust on loopback; saves a wrapper on every send
        # WireProtocol puts the socket in the scope (chunks are written directly); the guard
        # cuts off slow or oversized requests (relaybench.guard)
        http_protocol=guard.protocol(config.limits, base=WireProtocol),
        name="mock",
    )
    try:
        return relaybench.serve.serve(service, options, factory=True)
    finally:
        if first:
            shutil.rmtree(str(config.peer_dir), ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return serve(config_from_args(build_parser().parse_args(argv)), argv)
