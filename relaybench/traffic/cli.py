"""The ``relaybench run`` options of trace replay, chat sessions and client retries.

``add_arguments`` adds them to the run parser; ``resolve`` turns them into a ``TrafficConfig``
and checks everything before anything starts: for ``--scenario trace`` it reads the trace and
builds the whole schedule once (a bad file, a window outside the trace, ``--speedup 0``: exit 2,
one line naming the file, line and field), and prints the schedule's size and notes.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, replace
from pathlib import Path

from relaybench.cliargs import Parser, bounded, duration_s, non_negative_float, positive_float
from relaybench.errors import UsageError
from relaybench.traffic import retry
from relaybench.traffic.config import TrafficConfig
from relaybench.traffic.sessions import ChatConfig

TRACE_USERS = (
    200  # --scenario trace's default in-flight cap (the report's schedule lag says if low)
)
TRACE_FLAGS = ("trace", "trace_start", "trace_window", "speedup", "rate_scale")
CHAT_FLAGS = ("chat_shape", "chat_turns", "chat_turns_sigma", "think_read", "think_type")
CHAT_SHAPES = ("steady", "step", "peak", "spike", "soak")


def _start_s(text: str) -> float:
    """``--trace-start``: a duration, or 0."""
    try:
        if float(text) == 0:
            return 0.0
    except ValueError:
        pass
    return duration_s(text)


def add_arguments(p: Parser) -> None:
    g = p.add_argument_group("real traffic: --scenario trace, --scenario chat, --retry-policy")
    g.add_argument(
        "--trace",
        metavar="FILE",
        help="--scenario trace: an Azure trace CSV, Mooncake JSONL or generic CSV/JSONL "
        "(README, 'Trace formats'); default: the shipped Azure conversation trace (1 h)",
    )
    g.add_argument(
        "--trace-start",
        type=_start_s,
        metavar="S",
        default=0.0,
        help="skip this much of the trace first (trace time: 600, 10m)",
    )
    g.add_argument(
        "--trace-window",
        type=duration_s,
        metavar="S",
        help="replay this much of the trace (trace time: 10m); default: to its end",
    )
    g.add_argument(
        "--speedup",
        type=positive_float,
        metavar="X",
        default=1.0,
        help="compress the trace's time: 10 replays 10 minutes in one",
    )
    g.add_argument(
        "--rate-scale",
        type=positive_float,
        metavar="K",
        default=1.0,
        help="multiply the trace's arrivals, keeping its shape: 10 = ten times the traffic",
    )
    g.add_argument(
        "--retry-policy",
        default="none",
        metavar="none|seed|FILE",
        help="client retries: none; seed (3 retries of network errors, 429, 5xx before content, "
        "backoff from 1 s, full jitter, Retry-After honoured); or a TOML file of those knobs",
    )
    g.add_argument(
        "--chat-shape",
        choices=CHAT_SHAPES,
        default="steady",
        help="--scenario chat: how the sessions in flight (--users at the top) move over the run",
    )
    g.add_argument(
        "--chat-turns",
        type=bounded(1),
        metavar="N",
        default=ChatConfig.turns_median,
        help="--scenario chat: median turns per session (log-normal, long tail)",
    )
    g.add_argument(
        "--chat-turns-sigma",
        type=non_negative_float,
        metavar="SIGMA",
        default=ChatConfig.turns_sigma,
        help="spread of turns per session (log-normal sigma; 0: every session has the median)",
    )
    g.add_argument(
        "--think-read",
        type=non_negative_float,
        metavar="S",
        default=ChatConfig.read_s_per_token,
        help="think time: seconds per answer token read (people: about 0.2)",
    )
    g.add_argument(
        "--think-type",
        type=non_negative_float,
        metavar="S",
        default=ChatConfig.type_s_per_char,
        help="think time: seconds per character of the next message typed (people: about 0.2)",
    )


@dataclass(frozen=True)
class Resolved:
    traffic: TrafficConfig
    span_s: float | None  # --scenario trace: how long the schedule lasts
    arrivals: int | None
    notes: tuple[str, ...] = ()


def _given(args: argparse.Namespace, parser: Parser, names: tuple[str, ...]) -> list[str]:
    return [n for n in names if getattr(args, n) != parser.get_default(n)]


def resolve(
    args: argparse.Namespace,
    parser: Parser,
    *,
    seed: int,
    answer_tokens: tuple[int, int] | None,
) -> Resolved:
    """The traffic configuration of ``args``, fully checked (raises ``UsageError``)."""
    scenario = args.scenario
    for names, wanted in ((TRACE_FLAGS, "trace"), (CHAT_FLAGS, "chat")):
        stray = _given(args, parser, names)
        if stray and scenario != wanted:
            flags = ", ".join("--" + n.replace("_", "-") for n in stray)
            raise UsageError(f"{flags}: only with --scenario {wanted}")
    chat = ChatConfig(
        turns_median=args.chat_turns,
        turns_sigma=args.chat_turns_sigma,
        read_s_per_token=args.think_read,
        type_s_per_char=args.think_type,
    )
    if answer_tokens is not None:
        chat = replace(chat, answer_tokens=answer_tokens)
    traffic = TrafficConfig(
        trace=args.trace,
        trace_start_s=args.trace_start,
        trace_window_s=args.trace_window,
        speedup=args.speedup,
        rate_scale=args.rate_scale,
        chat=chat,
        retry=retry.resolve(args.retry_policy),
    )
    traffic.check()
    if scenario != "trace":
        return Resolved(traffic, None, None)
    if args.max_tokens != parser.get_default("max_tokens"):
        raise UsageError("--max-tokens: not with --scenario trace (each row sets its own)")
    sched = traffic.schedule(seed)  # errors name the file as given
    if traffic.trace is not None:  # Locust processes start elsewhere: hand them an absolute path
        traffic = replace(traffic, trace=str(Path(traffic.trace).resolve()))
    return Resolved(traffic, sched.span_s, len(sched), sched.notes)


def trace_duration_s(span_s: float) -> float:
    """The run's default duration for a trace schedule: its span, and a second for the last
    arrival (which sits at the span's very end)."""
    return float(math.ceil(span_s) + 1)


def describe(r: Resolved, duration_s: float) -> str:
    """One line about the schedule (and its notes), printed before the run starts."""
    t = r.traffic
    window = "to its end" if t.trace_window_s is None else f"{t.trace_window_s:g} s"
    name = Path(t.trace_path).name
    lines = [
        f"trace {name}: {r.arrivals} arrivals over {r.span_s:.1f} s (from {t.trace_start_s:g} s, "
        f"{window}, speedup {t.speedup:g}, rate-scale {t.rate_scale:g}); run {duration_s:g} s"
    ]
    lines += [f"  note: {n}" for n in r.notes]
    if duration_s < r.span_s:
        lines.append(
            f"  note: --duration {duration_s:g} s ends the run before the schedule does "
            f"({r.span_s:.1f} s): later arrivals are not sent"
        )
    return "\n".join(lines)


def mock_load(
    scenario: str, users: int, max_concurrency: int | None, max_queue: int | None
) -> dict[str, int | None]:
    """The embedded mock's load-model overrides. ``retry-storm`` sizes it so the peak (all
    ``users`` in flight) overloads it and the baseline does not: a quarter of the users
    generate, a quarter queue, the rest get 429 with Retry-After."""
    out: dict[str, int | None] = {}
    if scenario == "retry-storm":
        out = {"max_concurrency": max(1, users // 4), "max_queue": max(1, users // 4)}
    if max_concurrency is not None:
        out["max_concurrency"] = max_concurrency
    if max_queue is not None:
        out["max_queue"] = max_queue
    return out
