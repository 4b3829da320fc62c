"""What ``relaybench run`` prints while it goes: set-up steps, ``target i/N`` with an ETA, the
live progress line (inside the Locust process) and its final line.

Pure formatting, so the Locust process (``loadtests.worker``) and the orchestrator share it. A
value not measured yet (no answer so far) shows as ``-``, never as 0. The final line is printed
once every request of the target has ended, so its ``done`` equals the record count the results
table shows.
"""

from __future__ import annotations

import ast
import datetime as dt
import sys
from collections.abc import Iterable

TOP_CAUSES = 2  # causes on the live line; summary.json keeps more (reports.causes)
MAX_CAUSE = 90  # characters of a cause on the live line


def step(text: str) -> None:
    """One set-up step, as it starts or ends ("starting the mock ...", "relay ready")."""
    print(text, flush=True)


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, s = divmod(seconds, 60)
    return f"{minutes} min {s:02d} s" if minutes else f"{s} s"


def target_header(index: int, count: int, left_s: float, now: dt.datetime | None = None) -> str:
    """``target 2/3`` and when the whole run should end (targets left × their duration)."""
    now = now or dt.datetime.now()
    ends = (now + dt.timedelta(seconds=left_s)).strftime("%H:%M:%S")
    return f"target {index}/{count}, about {duration(left_s)} left in the run (ends ~{ends})"


def error_text(error: object) -> str:
    """A Locust ``StatsError.error`` as the cause it was raised with.

    Locally it is the exception (``CatchResponseError(cause)``); from remote workers it is the
    exception's repr as a string."""
    if isinstance(error, BaseException):
        return str(error.args[0]) if error.args else type(error).__name__
    text = str(error)
    head = "CatchResponseError("
    if text.startswith(head) and text.endswith(")"):
        inner = text[len(head) : -1]
        try:
            return str(ast.literal_eval(inner))
        except (ValueError, SyntaxError):
            return inner
    return text


def causes_text(causes: Iterable[tuple[str, int]], errors: int) -> str:
    """`` — 5297× HTTP 401: missing credentials …`` for the live line ("" without errors)."""
    top = sorted(causes, key=lambda c: -c[1])[:TOP_CAUSES]
    if not errors or not top:
        return ""
    parts = []
    for text, count in top:
        short = text if len(text) <= MAX_CAUSE else text[: MAX_CAUSE - 1] + "…"
        parts.append(f"{count}× {short}")
    return " — " + "; ".join(parts)


def line(
    name: str,
    *,
    elapsed_s: float,
    total_s: float,
    users: int,
    rps: float,
    ttft_p50: float | None,
    ttft_p95: float | None,
    done: int,
    errors: int,
    causes: Iterable[tuple[str, int]] = (),
    final: bool = False,
) -> str:
    if final:
        when = "end"
    elif elapsed_s >= total_s:
        when = "finishing"  # the scenario is over; requests in flight are ending
    else:
        when = f"{elapsed_s:5.0f}/{total_s:.0f} s"
    load = f"users {users:4d}  {rps:6.1f} req/s" if not final else f"{rps:.1f} req/s overall"
    return (
        f"  [{name}] {when}  {load}  "
        f"TTFT p50 {ms(ttft_p50)} p95 {ms(ttft_p95)} ms  done {done}  errors {errors}"
        + causes_text(causes, errors)
    )


def warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr, flush=True)
