"""The one argparse helper: a parser whose errors are ``UsageError`` and shared ``type=`` checks.

Every command builds its parser with ``Parser(prog=..., description=...)``: abbreviations off
(``--dur`` is not ``--duration``), each option's default shown in ``--help``, and a bad command
line raises ``UsageError`` (exit 2, ``error: <message>``) instead of argparse's ``sys.exit``.

The ``type=`` functions below raise ``argparse.ArgumentTypeError``, which argparse reports as
``argument --flag: <why>``; code that parses values itself (the relay's ``RELAY_*`` twins) can
call them directly and catch ``argparse.ArgumentTypeError``.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from typing import Any, NoReturn

from relaybench.errors import UsageError

__all__ = [
    "HelpFormatter",
    "Parser",
    "bounded",
    "duration_s",
    "fraction",
    "non_negative_float",
    "non_negative_int",
    "on_off",
    "port",
    "positive_float",
    "positive_int",
]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Like ``ArgumentDefaultsHelpFormatter``, minus ``(default: None)`` and empty defaults.

    Help texts already naming their default (``[default ...]`` / ``(default ...)``) are left
    alone, and so are flags without a help text (argparse adds nothing to those either).
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            not text
            or "default" in text.lower()
            or default is None
            or default is argparse.SUPPRESS
            or default is False
            or default in ("", [], ())
        ):
            return action.help
        return text + " (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with ``allow_abbrev=False``, defaults in help, UsageError."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} ({self.prog} --help lists the options)")


def _parse(text: str, kind: type) -> float:
    try:
        number = kind(text)
    except (TypeError, ValueError):
        noun = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
    if isinstance(number, float) and not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return number


def bounded(
    low: float | None = None,
    high: float | None = None,
    *,
    kind: type = float,
    low_open: bool = False,
    high_open: bool = False,
) -> Callable[[str], Any]:
    """A ``type=`` function: ``kind(text)`` within the bounds (``*_open``: the bound excluded)."""

    def parse(text: str) -> Any:
        number = _parse(text, kind)
        below = low is not None and (number < low or (low_open and number == low))
        above = high is not None and (number > high or (high_open and number == high))
        if not (below or above):
            return number
        if high is None:
            word = "greater than" if low_open else "at least"
            raise argparse.ArgumentTypeError(f"must be {word} {low:g}, got {text}")
        if low is None:
            word = "less than" if high_open else "at most"
            raise argparse.ArgumentTypeError(f"must be {word} {high:g}, got {text}")
        span = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise argparse.ArgumentTypeError(f"{text} is not within {span}")

    parse.__name__ = f"{kind.__name__}_in_range"  # argparse names the type in some messages
    return parse


positive_int = bounded(1, kind=int)
non_negative_int = bounded(0, kind=int)
positive_float = bounded(0, low_open=True)
non_negative_float = bounded(0)
fraction = bounded(0, 1)
port = bounded(0, 65535, kind=int)

_DURATION = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s|m|h)?\s*")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def duration_s(text: str) -> float:
    """``30``, ``1.5``, ``30s``, ``2m``, ``1h``, ``500ms`` -> seconds (a float > 0)."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration; use seconds or a unit: 30, 30s, 2m, 1h, 500ms"
        )
    seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return seconds


_ON = ("on", "true", "1", "yes")
_OFF = ("off", "false", "0", "no")


def on_off(text: str) -> bool:
    """``on``/``off`` (also true/false, 1/0, yes/no) -> bool."""
    lowered = text.strip().lower()
    if lowered in _ON:
        return True
    if lowered in _OFF:
        return False
    raise argparse.ArgumentTypeError(f"{text!r}: must be on or off")
