"""``relaybench faults``: score how honestly a relay fails, and write the scorecard.

    relaybench faults --out DIR                         the bundled relay, started here
    relaybench faults --out DIR --target NAME=URL       your relay; its upstream must be the
        [--mock-port P | --mock-url URL]                mock this prints (or --mock-url's)
        [--api-key K | --api-key-file PATH]

Exit codes: 0 nothing failed, 1 a scenario failed, 2 bad usage (unreachable target, a target
that needs a key, a target not in front of the mock), 130 interrupted (partial scorecard).
The API key (``--api-key``, ``--api-key-file`` or ``RELAYBENCH_API_KEY``, read by
``relaybench.credentials`` as for ``relaybench run``) is sent as a bearer token and written
nowhere: the recorded command line shows it as ``***`` wherever it appears. Credentials in a URL
(``https://user:pass@relay``) are shown as ``https://***@relay`` in messages and the scorecard.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from relaybench import cliargs, credentials
from relaybench.errors import UsageError
from relaybench.faults import runner, scorecard
from relaybench.faults.client import Client
from relaybench.faults.mocklog import MockLog
from relaybench.faults.scenarios import (
    SCENARIOS,
    AuthRequired,
    Context,
    NotThroughMock,
    Result,
)
from relaybench.faults.servers import Servers
from relaybench.run.servers import check_reachable

DEFAULT_MAX_HANG_S = 10.0
MAX_UNDER_LOAD = 1000  # background streams: a bound on what one harness process may open


def build_parser() -> cliargs.Parser:
    p = cliargs.Parser(
        prog="relaybench faults",
        description="Run the fault suite against a relay and write a scorecard "
        "(faults.json, faults.md, faults.html, faults-junit.xml).",
    )
    p.add_argument("--out", type=Path, required=True, help="folder for the scorecard files")
    p.add_argument(
        "--target",
        metavar="NAME=URL",
        help="score this relay (its upstream must point at the mock); "
        "default: start the bundled relay",
    )
    credentials.add_key_arguments(p)  # --api-key, --api-key-file (as relaybench run's)
    p.add_argument(
        "--model",
        help="model name sent to --target (for gateways that route by model); "
        "default: relaybench-mock",
    )
    p.add_argument(
        "--under-load",
        type=cliargs.bounded(0, MAX_UNDER_LOAD, kind=int),
        default=0,
        metavar="N",
        help="run the suite while N clean streams run against the same target",
    )
    p.add_argument(
        "--mock-port",
        type=cliargs.port,
        default=0,
        help="port of the mock the harness starts (fix it in your relay's config; 0: any)",
    )
    p.add_argument("--mock-url", help="use this running mock instead of starting one")
    p.add_argument(
        "--scenarios",
        type=_names,
        default=(),
        metavar="A,B",
        help="run only these scenarios (comma-separated; the clean stream always runs); "
        f"from: {', '.join(SCENARIOS)}",
    )
    p.add_argument(
        "--max-hang-s",
        type=cliargs.positive_float,
        default=DEFAULT_MAX_HANG_S,
        help="the client's patience: a time to error above this FAILs",
    )
    return p


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {unknown[0] if unknown else text!r}; choose from "
            + ", ".join(SCENARIOS)
        )
    return names


def _target(spec: str) -> tuple[str, str]:
    name, sep, url = spec.partition("=")
    parts = urlsplit(url)
    if not sep or not name or parts.scheme not in ("http", "https") or not parts.hostname:
        shown = credentials.redact_url(spec)
        raise UsageError(f"--target {shown!r}: use NAME=URL, e.g. myrelay=http://127.0.0.1:8080")
    return name, url


def redacted(argv: Sequence[str], api_key: str | None) -> str:
    """The command line with the API key (by value: ``relaybench.credentials``) and URLs'
    credentials replaced by ``***``."""
    words = credentials.redacted_words(argv, [api_key])
    return " ".join(["relaybench", "faults", *words])


def _check_mock(url: str) -> None:
    try:
        response = httpx.get(url.rstrip("/") + "/mock/requests", params={"since": 0}, timeout=5.0)
    except httpx.HTTPError as exc:
        raise UsageError(f"--mock-url {url} is unreachable: {exc}") from exc
    if response.status_code != 200:
        raise UsageError(
            f"--mock-url {url} has no request log (GET /mock/requests: {response.status_code}); "
            "run relaybench's mock there"
        )


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    api_key = credentials.api_key(args)
    target = _target(args.target) if args.target else None
    if args.mock_url and args.mock_port:
        raise UsageError("--mock-port applies to the mock the harness starts; not with --mock-url")
    hide = [api_key] if api_key else []  # written nowhere, even where a relay echoes them
    if target is not None and credentials.redact_url(target[1]) != target[1]:
        hide.append(target[1])
    if target is not None:
        try:
            check_reachable(*target)  # before anything starts or runs
        except UsageError as exc:
            raise UsageError(credentials.redact_url(exc.message)) from None
    if args.mock_url:
        _check_mock(args.mock_url)
    servers = Servers()
    results: list[Result] = []
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    clock = time.perf_counter()
    run: dict[str, Any] = {
        "started_at": started_at,
        "command": redacted(argv, api_key),  # the key and any URL's credentials as ***
        "under_load": args.under_load,
        "max_hang_s": args.max_hang_s,
        "harness_started_relay": target is None,
        "interrupted": False,
    }
    try:
        mock_url = args.mock_url or servers.start_mock(args.mock_port)
        if target is None:
            urls = servers.start_relays(mock_url)
            target = ("relay", urls["relay"])
            print(f"mock upstream {mock_url}; bundled relay {urls['relay']}", flush=True)
        else:
            print(f"mock upstream {mock_url}: {target[0]}'s upstream must point here", flush=True)
        shown = {"name": target[0], "url": credentials.redact_url(target[1])}
        run.update(target=shown, mock_url=credentials.redact_url(mock_url))
        ctx = _context(servers, target[1], mock_url, api_key, args.max_hang_s, args.model)
        client = Client(target[1], api_key, args.model)
        load = runner.Background(client, args.under_load, ctx.run_id) if args.under_load else None
        try:
            names = runner.suite_order(args.scenarios)
            harness = bool(servers.relays)
            asyncio.run(
                runner.run(
                    ctx, results, harness=harness, load=load, names=names, announce=_announce
                )
            )
        except KeyboardInterrupt:
            run["interrupted"] = True
        except AuthRequired as exc:
            how = (
                "the API key was refused"
                if api_key
                else "pass --api-key, --api-key-file or RELAYBENCH_API_KEY"
            )
            message = f"{target[0]} answered the clean stream with 401 ({how}): {exc}"
            raise UsageError(credentials.redact_url(scorecard.scrub(message, hide))) from None
        except NotThroughMock as exc:
            message = (
                f"{target[0]} answered the clean stream ({exc}) but the mock at {mock_url} never "
                f"saw it: point {target[0]}'s upstream URL at {mock_url}"
            )
            raise UsageError(credentials.redact_url(scorecard.scrub(message, hide))) from None
        if load is not None:
            results.append(load.result())
    finally:
        servers.stop()
    run["duration_s"] = round(time.perf_counter() - clock, 3)
    doc = scorecard.write(args.out, results, run, hide=hide)
    _print(doc, args.out)
    if run["interrupted"]:
        return 130
    return 1 if doc["totals"]["failed"] else 0


def _context(
    servers: Servers,
    url: str,
    mock_url: str,
    api_key: str | None,
    max_hang_s: float,
    model: str | None,
) -> Context:
    relays = servers.relays
    return Context(
        target=Client(url, api_key, model),
        mock=Client(mock_url),
        log=MockLog(mock_url),
        run_id=secrets.token_hex(4),
        max_hang_s=max_hang_s,
        down=Client(relays["down"].url) if "down" in relays else None,
        wire=Client(relays["wire"].url) if "wire" in relays else None,
        wire_server=servers.wire,
        secrets=(servers.canary,) if relays else (),
    )


def _announce(text: str) -> None:
    print(text, flush=True)


def _print(doc: dict[str, Any], out: Path) -> None:
    width = max((len(s["title"]) for s in doc["scenarios"]), default=10)
    for entry in doc["scenarios"]:
        line = f"{entry['verdict']:<4}  {entry['title']:<{width}}  {entry['value']}"
        if entry["verdict"] == "FAIL" and entry["detail"]:
            line += f"  [{entry['detail']}]"
        print(line)
    print()
    for name, value in scorecard.headline(doc):
        print(f"{name}: {value}")
    print(f"scorecard: {out / 'faults.json'} (.md, .html, -junit.xml)", file=sys.stdout)
