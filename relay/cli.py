"""``relaybench relay`` / ``python -m relay``: run the relay under uvicorn (uvloop + httptools).

Start-up is ``relaybench.serve``: one stdout line ``listening on http://H:P`` with the real port
(port 0 works); on SIGTERM/SIGINT the relay stops accepting, gives open streams ``--grace-ms`` to
finish, then ends the rest with the SSE error line; exit 0.

``--workers N`` runs N processes on one port (SO_REUSEPORT), copies of this command started by
``relaybench.serve``; the kernel spreads connections over them. Use ``--redis-url`` with several
workers so they share rate limits; the concurrent-streams cap stays per process. Their metrics
are shared (``relay.metrics``): this process makes the directory before anything imports
``prometheus_client``, the workers inherit it, and it is removed when the relay stops.
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence

from relay.config import METRICS_DIR_ENV, RelayConfig, parse_config
from relay.logs import setup_logging
from relaybench import guard
from relaybench.serve import ServeOptions, Service, serve
from relaybench.wire import WireProtocol


def main(argv: Sequence[str]) -> int:
    argv = list(argv)
    config = parse_config(argv, os.environ)
    setup_logging(config.log_level)
    made = None
    if config.workers > 1 and METRICS_DIR_ENV not in os.environ:
        made = os.environ[METRICS_DIR_ENV] = tempfile.mkdtemp(prefix="relay-metrics-")
    try:
        return _run(argv, config)
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


def _run(argv: list[str], config: RelayConfig) -> int:
    from relay.app import Relay, build_app, load_keys  # imports prometheus_client

    load_keys(config)  # refuse a configuration that cannot work before binding anything

    def service() -> Service:  # built inside the event loop
        relay = Relay(config)
        return Service(
            build_app(relay),
            on_stop=relay.begin_drain,
            aclose=relay.close,
            on_worker_exit=relay.metrics.forget_worker,
        )

    def worker_argv(port: int) -> list[str]:
        return ["-m", "relay", *argv, "--port", str(port), "--workers", "1", "--reuse-port", "on"]

    options = ServeOptions(
        host=config.host,
        port=config.port,
        workers=config.workers,
        reuse_port=config.reuse_port,
        grace_s=config.grace_s + 1.0,  # the relay cuts what still streams after grace_s itself
        worker_argv=worker_argv,
        timeout_keep_alive_s=30,
        tcp_nodelay=True,
        http_protocol=http_protocol(config),
        name="relay",
    )
    # Requests allocate many short-lived objects and few cycles: collect less often.
    gc.set_threshold(50_000, 20, 20)
    return serve(service, options, factory=True)


def http_protocol(config: RelayConfig) -> type:
    """uvicorn's httptools protocol with the guard's limits (slow or oversized requests: 408/431;
    too many connections: 503) and the ``Wire`` the streamed chunks are written through."""
    return guard.protocol(
        guard.GuardLimits(
            header_timeout_s=config.header_timeout_s,
            body_timeout_s=config.body_timeout_s,
            max_header_bytes=config.max_header_bytes,
            max_headers=config.max_headers,
            max_connections=config.max_connections,
        ),
        base=WireProtocol,
        fds_per_connection=2,  # a stream holds the client's socket and an upstream one
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
