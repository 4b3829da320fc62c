"""The shared argparse helper: usage errors, help defaults and the number types."""

from __future__ import annotations

import argparse
import re

import pytest

from relaybench import cliargs
from relaybench.errors import UsageError


def parser() -> cliargs.Parser:
    p = cliargs.Parser(prog="relaybench demo")
    p.add_argument("--duration", type=cliargs.duration_s, default=30.0, help="seconds")
    p.add_argument("--name", help="a name")
    p.add_argument("--flag", action="store_true", help="a flag")
    p.add_argument("--empty", default="", help="empty default")
    return p


def test_bad_usage_is_a_usage_error_naming_the_help() -> None:
    with pytest.raises(UsageError) as info:
        parser().parse_args(["--duration", "0"])
    assert info.value.exit_code == 2
    assert info.value.message == (
        "argument --duration: must be greater than 0, got 0"
        " (relaybench demo --help lists the options)"
    )


def test_abbreviations_are_refused() -> None:
    with pytest.raises(UsageError, match="unrecognized arguments: --dur"):
        parser().parse_args(["--dur", "3"])


def test_help_shows_real_defaults_only() -> None:
    text = parser().format_help()
    assert "seconds (default: 30.0)" in text
    assert "None" not in text and "default: False" not in text and "default: )" not in text


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30.0), ("1.5", 1.5), ("30s", 30.0), ("2m", 120.0), ("1h", 3600.0), ("500ms", 0.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert cliargs.duration_s(text) == seconds


@pytest.mark.parametrize(
    ("func", "text", "message"),
    [
        (cliargs.duration_s, "0s", "greater than 0"),
        (cliargs.duration_s, "-2m", "not a duration"),
        (cliargs.duration_s, "2 weeks", "not a duration"),
        (cliargs.positive_int, "0", "at least 1"),
        (cliargs.positive_int, "1.5", "not an integer"),
        (cliargs.non_negative_int, "-1", "at least 0"),
        (cliargs.positive_float, "0", "greater than 0"),
        (cliargs.positive_float, "nan", "not a finite number"),
        (cliargs.non_negative_float, "-0.1", "at least 0"),
        (cliargs.non_negative_float, "fast", "not a number"),
        (cliargs.fraction, "1.01", "not within [0, 1]"),
        (cliargs.port, "65536", "not within [0, 65535]"),
        (cliargs.on_off, "maybe", "on or off"),
        (cliargs.bounded(0, 1, high_open=True), "1", "not within [0, 1)"),
    ],
)
def test_bad_values_say_why(func, text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
        func(text)


def test_good_values() -> None:
    assert cliargs.port("0") == 0 and cliargs.port("65535") == 65535
    assert cliargs.fraction("0") == 0.0 and cliargs.fraction("1") == 1.0
    assert cliargs.non_negative_int("0") == 0 and cliargs.positive_float("0.5") == 0.5
    assert cliargs.on_off("ON") is True and cliargs.on_off("off") is False
