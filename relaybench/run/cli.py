"""``relaybench run``: parse the command line into a ``RunPlan`` and run it.

Exit codes (``relaybench.run.exitcodes``): 0 completed and healthy, 1 an SLO verdict failed or
every request of a target failed, 2 bad usage or an unreachable target, 130 interrupted (the
summary of what was measured is still built). The last line printed is the run folder's path.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from relaybench import credentials
from relaybench.cliargs import (
    Parser,
    duration_s,
    fraction,
    non_negative_float,
    non_negative_int,
    port,
    positive_float,
    positive_int,
)
from relaybench.errors import UsageError
from relaybench.run import configfile, exitcodes, preflight
from relaybench.run.config import OPEN_LOOP, SCENARIOS, LoadConfig, ShapeParams, Target
from relaybench.run.orchestrator import Orchestrator, RunPlan
from relaybench.run.servers import MockSettings
from relaybench.scrape.scraper import name_for_url
from relaybench.traffic import cli as traffic_cli

DEFAULT_TARGETS = ("direct", "relay", "relay-buffered")
MIN_SCRAPE_INTERVAL_S = 0.1
DEFAULT_RATE = 5.0


def build_parser() -> Parser:
    p = Parser(prog="relaybench run", description="Run a benchmark and write a run folder.")
    p.add_argument("--out", type=Path, help="run folder (default runs/<YYYYmmdd-HHMMSS>)")
    p.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="an OpenAI-compatible base URL (http://h:p or http://h:p/v1); repeatable. "
        "Without it, the mock and the relay are started and direct, relay, relay-buffered run",
    )
    p.add_argument(
        "--buffered",
        action="append",
        default=[],
        metavar="NAME",
        help="send stream: false to this --target (repeatable)",
    )
    p.add_argument("--scenario", default="steady", help=f"one of {', '.join(SCENARIOS)}")
    p.add_argument(
        "--users",
        type=positive_int,
        help="users (open loop: in-flight cap; chat: sessions in flight) (default 10; "
        f"--scenario trace: {traffic_cli.TRACE_USERS})",
    )
    p.add_argument(
        "--duration",
        type=duration_s,
        help="per target: seconds, or 30s, 2m, 1h (default 30; --scenario trace: the schedule's "
        "length)",
    )
    p.add_argument(
        "--rate", type=positive_float, help=f"open loop req/s (default {DEFAULT_RATE:g})"
    )
    p.add_argument("--steps", type=positive_int, default=5, help="steps of the step scenario")
    credentials.add_arguments(p)  # --api-key, --api-key-file, --ca-file, --insecure
    p.add_argument(
        "--seed", type=int, default=1, help="seed of the workload, schedule and mock draws"
    )
    p.add_argument("--processes", type=positive_int, default=1, help="Locust worker processes")
    p.add_argument(
        "--remote-workers",
        type=non_negative_int,
        default=0,
        help="also wait for N workers on other machines",
    )
    p.add_argument(
        "--master-bind",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="where the Locust master listens (remote workers need a reachable one)",
    )
    p.add_argument("--web", action="store_true", help="serve Locust's web UI while running")
    p.add_argument("--web-port", type=port, default=8089, help="port of the web UI (with --web)")
    p.add_argument(
        "--ttft-ms", type=non_negative_float, default=500.0, help="mock time to first token"
    )
    p.add_argument(
        "--itl-ms", type=non_negative_float, default=25.0, help="mock time between tokens"
    )
    p.add_argument(
        "--output-tokens",
        type=positive_int,
        default=150,
        help="mock answer length without max_tokens",
    )
    p.add_argument(
        "--max-concurrency",
        type=non_negative_int,
        help="mock generations at once, the rest queue (default 48; 0: unlimited; "
        "retry-storm: users/4)",
    )
    p.add_argument(
        "--max-queue",
        type=non_negative_int,
        help="mock queue length beyond which it answers 429 (default unbounded; retry-storm: "
        "users/4)",
    )
    p.add_argument(
        "--max-tokens",
        default="100-200",
        help="max_tokens per request: N, LO-HI (seeded uniform), or 'none'",
    )
    p.add_argument("--model", default="relaybench-mock", help="model name sent in every request")
    p.add_argument("--timeout", type=positive_float, default=60.0, help="read timeout, seconds")
    p.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="extra request header (repeatable), e.g. X-Mock-Fault:status:429",
    )
    p.add_argument(
        "--slo-ttft-p95-ms",
        type=positive_float,
        default=1000.0,
        help="SLO: TTFT p95 limit in ms (in run.json, for the report)",
    )
    p.add_argument(
        "--slo-error-rate",
        type=fraction,
        default=0.01,
        help="SLO: highest share of failed requests, 0..1 (in run.json, for the report)",
    )
    p.add_argument("--calibration", type=Path, help="a relaybench calibrate JSON to compare with")
    traffic_cli.add_arguments(p)
    p.add_argument(
        "--scrape",
        action="append",
        default=[],
        metavar="[NAME=]URL",
        help="also poll this Prometheus text endpoint during the run (repeatable), e.g. "
        "vllm=http://127.0.0.1:8000/metrics; samples go to <run>/server/",
    )
    p.add_argument(
        "--scrape-pid",
        action="append",
        default=[],
        metavar="[NAME=]PID",
        help="also sample this process's CPU, RSS, fds and threads (repeatable)",
    )
    p.add_argument(
        "--scrape-redis",
        action="append",
        default=[],
        metavar="[NAME=]URL",
        help="also time a PING to this Redis and read its INFO (repeatable), e.g. the "
        "relay's rate-limit store redis://127.0.0.1:6379/0",
    )
    p.add_argument(
        "--scrape-interval",
        type=positive_float,
        default=1.0,
        help="seconds between polls of every scraped source",
    )
    p.add_argument(
        "--no-scrape",
        action="store_true",
        help="do not poll the servers relaybench starts (--scrape/--scrape-pid still apply)",
    )
    return p


def _max_tokens(text: str) -> tuple[int, int] | None:
    if text.lower() == "none":
        return None
    lo, _, hi = text.partition("-")
    try:
        rng = (int(lo), int(hi or lo))
    except ValueError:
        raise UsageError(f"--max-tokens {text!r}: use N, LO-HI or none") from None
    if not 1 <= rng[0] <= rng[1]:
        raise UsageError(f"--max-tokens {text!r}: need 1 <= LO <= HI")
    return rng


def _targets(specs: Sequence[str]) -> list[Target]:
    out: list[Target] = []
    for spec in specs:
        name, sep, url = spec.partition("=")
        if not sep or not name or not url:
            shown = credentials.redact_url(spec)
            raise UsageError(f"--target {shown!r}: use NAME=URL, e.g. relay=http://127.0.0.1:8000")
        target = Target(name, url, stream=True, kind="external", stamps=False)
        target.check()
        if any(t.name == name for t in out):
            raise UsageError(f"--target {name} given twice")
        out.append(target)
    return out


def _headers(specs: Sequence[str]) -> dict[str, str]:
    out = {}
    for spec in specs:
        name, sep, value = spec.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"--header {spec!r}: use NAME:VALUE")
        out[name.strip()] = value.strip()
    return out


def _scrape_urls(specs: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    for spec in specs:
        name, sep, url = spec.partition("=")
        if not sep or "://" in name:  # a bare URL (its query may hold '=')
            name, url = name_for_url(spec), spec
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or not name:
            raise UsageError(
                f"--scrape {credentials.redact_url(spec)!r}: use [NAME=]http(s)://HOST:PORT/PATH"
            )
        out.append((name, url))
    return out


def _scrape_redis(specs: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    for spec in specs:
        name, sep, url = spec.partition("=")
        if not sep or "://" in name:
            name, url = name_for_url(spec) if "://" in spec else "", spec
        parts = urlsplit(url)
        where = parts.path if parts.scheme == "unix" else parts.hostname  # a socket or a host
        if parts.scheme not in ("redis", "rediss", "unix") or not where or not name:
            raise UsageError(
                f"--scrape-redis {credentials.redact_url(spec)!r}: use [NAME=]redis://HOST:PORT/DB"
            )
        out.append((name, url))
    return out


def _scrape_pids(specs: Sequence[str]) -> list[tuple[str, int]]:
    out = []
    for spec in specs:
        name, sep, pid = spec.rpartition("=")
        name = name if sep else f"pid-{pid}"
        # ASCII only: str.isdigit alone takes any Unicode digit ('١٢' would be PID 12)
        if not (pid.isascii() and pid.isdigit()) or int(pid) <= 0 or not name:
            raise UsageError(f"--scrape-pid {spec!r}: use [NAME=]PID with a positive PID")
        out.append((name, int(pid)))
    return out


def _calibration(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise UsageError(f"--calibration {path}: cannot read it: {exc}") from exc
    return {"file": str(path), **data} if isinstance(data, dict) else {"file": str(path)}


def parse(argv: Sequence[str]) -> RunPlan:
    parser = build_parser()
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help='a TOML file of these options (users = 10, duration = "30s", target = [...]); '
        "the command line overrides it (examples/run.toml)",
    )
    args = configfile.parse_with_config(parser, argv)
    if args.scenario not in SCENARIOS:
        raise UsageError(f"unknown scenario {args.scenario!r}; choose from {', '.join(SCENARIOS)}")
    bind_host, _, bind_port = args.master_bind.rpartition(":")
    if not bind_host or not bind_port.isdigit():
        raise UsageError(f"--master-bind {args.master_bind!r}: use HOST:PORT")
    if args.remote_workers and int(bind_port) == 0:
        raise UsageError("--remote-workers needs a fixed port in --master-bind HOST:PORT")
    if args.scrape_interval < MIN_SCRAPE_INTERVAL_S:
        raise UsageError(
            f"--scrape-interval {args.scrape_interval:g}: at least {MIN_SCRAPE_INTERVAL_S:g} s "
            "(faster polling would load the servers it measures)"
        )
    targets = _targets(args.target)
    names = [t.name for t in targets] or list(DEFAULT_TARGETS)
    for name in args.buffered:
        if not targets:
            raise UsageError("--buffered applies to --target names; the default targets are fixed")
        if name not in names:
            raise UsageError(f"--buffered {name}: unknown target; choose from {', '.join(names)}")
    max_tokens = _max_tokens(args.max_tokens)
    traffic = traffic_cli.resolve(args, parser, seed=args.seed, answer_tokens=max_tokens)
    if args.scenario == "trace" and args.rate is not None:
        raise UsageError("--rate: not with --scenario trace (the trace sets it; see --rate-scale)")
    rate = args.rate
    if rate is None and args.scenario in OPEN_LOOP and args.scenario != "trace":
        rate = DEFAULT_RATE
    duration = args.duration or 30.0
    users = args.users or (traffic_cli.TRACE_USERS if args.scenario == "trace" else 10)
    if traffic.span_s is not None:
        duration = args.duration or traffic_cli.trace_duration_s(traffic.span_s)
        print(traffic_cli.describe(traffic, duration), flush=True)
    shape = ShapeParams(
        scenario=args.scenario,
        users=users,
        duration_s=duration,
        rate=rate,
        steps=args.steps,
        chat_shape=args.chat_shape,
    )
    run_dir = args.out or Path("runs") / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UsageError(f"--out {run_dir} exists and is not empty; choose a new folder")
    api_key = credentials.api_key(args)
    if args.insecure:
        print(
            "warning: --insecure: https certificates and host names are not checked; the API "
            "key goes to whoever answers",
            file=sys.stderr,
            flush=True,
        )
    load = LoadConfig(
        run_dir=str(run_dir),
        target=Target("-", "http://127.0.0.1"),
        shape=shape,
        seed=args.seed,
        api_key=api_key,
        processes=args.processes,
        remote_workers=args.remote_workers,
        master_bind=bind_host,
        master_port=int(bind_port),
        max_tokens=max_tokens,
        model=args.model,
        timeout_s=args.timeout,
        connect_timeout_s=min(10.0, args.timeout),
        ca_file=credentials.ca_file(args),
        insecure=args.insecure,
        stop_timeout_s=max(10.0, args.timeout),
        extra_headers=_headers(args.header),
        web=args.web,
        web_port=args.web_port,
        traffic=traffic.traffic,
    )
    return RunPlan(
        run_dir=run_dir,
        command=credentials.redacted_command(["relaybench", "run", *argv], [api_key]),
        load=load,
        targets=targets,
        buffered=set(args.buffered),
        mock=MockSettings(
            args.ttft_ms,
            args.itl_ms,
            args.output_tokens,
            args.seed,
            **traffic_cli.mock_load(args.scenario, users, args.max_concurrency, args.max_queue),
        ),
        slo={"ttft_ms_p95": args.slo_ttft_p95_ms, "error_rate": args.slo_error_rate},
        calibration=_calibration(args.calibration),
        scrape_urls=_scrape_urls(args.scrape),
        scrape_pids=_scrape_pids(args.scrape_pid),
        scrape_redis=_scrape_redis(args.scrape_redis),
        scrape_interval_s=args.scrape_interval,
        scrape_servers=not args.no_scrape,
    )


def main(argv: Sequence[str] | None = None) -> int:
    plan = parse(list(sys.argv[1:] if argv is None else argv))
    preflight.check(plan)
    orchestrator = Orchestrator(plan)
    summary = orchestrator.run()
    if summary is not None:
        try:
            from reports.markdown import results_table

            print()
            print(results_table(summary))
        except ImportError:
            pass
        for line in causes_lines(summary):
            print(line)
        health = summary.get("health") or {}
        if health.get("degraded"):
            print("\nhealth: DEGRADED — " + "; ".join(health.get("reasons", [])))
    if orchestrator.interrupted:
        print("interrupted: the records measured so far are kept and summarised")
    code, reasons = exitcodes.run_exit_code(
        summary, orchestrator.meta, interrupted=orchestrator.interrupted
    )
    if code not in (exitcodes.OK, exitcodes.INTERRUPTED):
        print(f"exit {code}: " + "; ".join(reasons))
    print(plan.run_dir)
    return code


def causes_lines(summary: dict[str, Any]) -> list[str]:
    """The top causes of failed requests per target (summary.json ``error_causes``)."""
    lines = []
    for name, t in (summary.get("targets") or {}).items():
        for c in (t.get("error_causes") or [])[:3]:
            lines.append(f"  {name}: {c['count']}× {c['cause']}")
    return ["", "causes of failed requests:", *lines] if lines else []
