"""The relay's typed configuration: every flag has a ``RELAY_*`` environment twin.

``parse_config(argv, env)`` is the one place flags, environment and defaults meet; the result
is a frozen ``RelayConfig`` passed to everything that needs it (no module-level globals).
Precedence: command-line flag, then environment variable, then the default. Durations are
milliseconds on the command line and seconds (``*_s``) in the object.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relaybench.cliargs import (
    Parser,
    non_negative_float,
    non_negative_int,
    on_off,
    port,
    positive_float,
    positive_int,
)
from relaybench.errors import UsageError
from relaybench.guard import connection_cap

# prometheus_client reads it at import: several workers share their metrics there (relay.metrics)
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass(frozen=True)
class RelayConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    upstream_url: str = "http://127.0.0.1:8001"  # the mock's default port
    upstream_api_key: str = field(default="", repr=False)  # secrets: never in a repr or log
    upstream_ca_file: Path | None = None  # https upstreams: trust this CA file, not the system's
    keys_file: Path | None = None
    jwt_secret: str = field(default="", repr=False)
    redis_url: str = ""
    allowed_origins: tuple[str, ...] = ()
    auth: bool = True
    anon_plan: str = "basic"  # the plan applied per client IP when auth is off
    connect_timeout_s: float = 5.0
    first_token_timeout_s: float = 60.0
    idle_timeout_s: float = 30.0
    keepalive_s: float = 0.0  # 0: no ``: keep-alive`` comments while waiting for the first token
    max_retries: int = 2
    retry_base_s: float = 0.1
    retry_after_cap_s: float = 2.0
    retry_deadline_s: float = 10.0
    pool_max_connections: int = 1000
    pool_max_keepalive: int = 200
    pool_timeout_s: float = 5.0
    pool_idle_s: float = 4.0  # under the upstream's keep-alive (uvicorn's: 5 s): we close first
    max_body_bytes: int = 1024 * 1024
    header_timeout_s: float = 10.0  # slow or oversized requests: relaybench.guard
    body_timeout_s: float = 30.0
    max_header_bytes: int = 65536
    max_headers: int = 100
    max_connections: int | None = None  # None: from RLIMIT_NOFILE (guard.default_max_connections)
    grace_s: float = 3.0
    ratelimit_fail: str = "open"  # "open" admits when Redis is unreachable, "closed" answers 503
    redis_timeout_s: float = 0.25
    redis_retry_s: float = 1.0  # after a Redis failure, skip Redis for this long
    forward_header_prefixes: tuple[str, ...] = ("x-mock-",)
    default_model: str = "gpt-4o-mini"
    log_level: str = "info"
    workers: int = 1
    reuse_port: bool = False


def _ms(value: str) -> float:
    return non_negative_float(value) / 1000.0


def _positive_ms(value: str) -> float:
    return positive_float(value) / 1000.0


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value

    return parse


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value.rstrip("/")


# flag, field, parser, default (as the flag's text), help. The env var is RELAY_<FLAG>.
OPTIONS: list[tuple[str, str, Callable[[str], Any], str, str]] = [
    ("--host", "host", str, "127.0.0.1", "interface to listen on"),
    ("--port", "port", port, "8080", "port to listen on (0: OS-chosen)"),
    ("--upstream-url", "upstream_url", _url, "http://127.0.0.1:8001", "OpenAI-compatible base"),
    ("--upstream-api-key", "upstream_api_key", str, "", "provider key sent upstream"),
    ("--upstream-ca-file", "upstream_ca_file", Path, "", "CA file for an https upstream"),
    ("--keys-file", "keys_file", Path, "", "JSON keys file (hashes + plans)"),
    ("--jwt-secret", "jwt_secret", str, "", "HS256 secret for client JWTs"),
    ("--redis-url", "redis_url", str, "", "shared rate limits (unset: in-memory)"),
    ("--allowed-origins", "allowed_origins", _csv, "", "CORS allowlist, comma-separated"),
    ("--auth", "auth", on_off, "on", "on|off: authenticate clients"),
    ("--anon-plan", "anon_plan", str, "basic", "plan applied per client IP when auth is off"),
    ("--connect-timeout-ms", "connect_timeout_s", _ms, "5000", "upstream connect timeout"),
    ("--first-token-timeout-ms", "first_token_timeout_s", _ms, "60000", "wait for 1st byte"),
    ("--idle-timeout-ms", "idle_timeout_s", _ms, "30000", "longest gap between chunks"),
    ("--keepalive-ms", "keepalive_s", _ms, "0", "SSE comment interval before the first token"),
    ("--max-retries", "max_retries", non_negative_int, "2", "retries before the first byte"),
    ("--retry-base-ms", "retry_base_s", _ms, "100", "first backoff (doubles, jittered)"),
    ("--retry-after-cap-ms", "retry_after_cap_s", _ms, "2000", "longest Retry-After honoured"),
    ("--retry-deadline-ms", "retry_deadline_s", _ms, "10000", "total time for all attempts"),
    ("--pool-max-connections", "pool_max_connections", positive_int, "1000", "upstream pool"),
    ("--pool-max-keepalive", "pool_max_keepalive", non_negative_int, "200", "idle upstream conns"),
    ("--pool-timeout-ms", "pool_timeout_s", _ms, "5000", "wait for a pool connection"),
    ("--pool-idle-ms", "pool_idle_s", _ms, "4000", "close idle upstream connections after"),
    ("--max-body-bytes", "max_body_bytes", positive_int, "1048576", "request body limit"),
    ("--header-timeout-ms", "header_timeout_s", _positive_ms, "10000", "headers within, or 408"),
    ("--body-timeout-ms", "body_timeout_s", _positive_ms, "30000", "body within, or 408"),
    ("--max-header-bytes", "max_header_bytes", positive_int, "65536", "larger headers: 431"),
    ("--max-headers", "max_headers", positive_int, "100", "more header lines: 431"),
    ("--max-connections", "max_connections", connection_cap, "auto", "more connections: 503"),
    ("--grace-ms", "grace_s", _ms, "3000", "on SIGTERM, let streams finish this long"),
    ("--ratelimit-fail", "ratelimit_fail", _choice("open", "closed"), "open", "Redis down"),
    ("--redis-timeout-ms", "redis_timeout_s", _ms, "250", "Redis socket timeouts"),
    ("--redis-retry-ms", "redis_retry_s", _ms, "1000", "skip Redis this long after a failure"),
    ("--forward-header-prefixes", "forward_header_prefixes", _csv, "x-mock-", "sent upstream"),
    ("--default-model", "default_model", str, "gpt-4o-mini", "model for /api/chat/stream"),
    ("--log-level", "log_level", _choice("debug", "info", "warning", "error"), "info", "logs"),
    ("--workers", "workers", positive_int, "1", "processes sharing the port (SO_REUSEPORT)"),
    ("--reuse-port", "reuse_port", on_off, "off", "on|off: SO_REUSEPORT, for several relays"),
]


def env_name(flag: str) -> str:
    return "RELAY_" + flag.lstrip("-").replace("-", "_").upper()


def build_parser() -> Parser:
    parser = Parser(
        prog="relaybench relay",
        description="The bundled relay. Every flag also reads its RELAY_* environment variable.",
    )
    for flag, dest, _, default, help_ in OPTIONS:
        parser.add_argument(
            flag,
            dest=dest,
            default=None,
            metavar=flag.lstrip("-").replace("-", "_").upper(),
            help=f"{help_} [{env_name(flag)}, default {default!r}]",
        )
    return parser


def parse_config(argv: Sequence[str], env: Mapping[str, str]) -> RelayConfig:
    """Flags over ``RELAY_*`` environment over defaults; a bad value raises UsageError."""
    args = build_parser().parse_args(list(argv))
    values: dict[str, Any] = {}
    for flag, dest, convert, default, _ in OPTIONS:
        raw = getattr(args, dest)
        source = flag
        if raw is None:
            raw = env.get(env_name(flag))
            source = env_name(flag)
        if raw is None:
            raw, source = default, f"default of {flag}"
        if dest in ("keys_file", "upstream_ca_file") and raw == "":
            values[dest] = None
            continue
        try:
            values[dest] = convert(raw)
        except (ValueError, argparse.ArgumentTypeError) as exc:
            raise UsageError(f"{source}={raw!r}: {exc}") from None
    return RelayConfig(**values)
