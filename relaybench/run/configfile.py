"""``relaybench run --config FILE``: the run's flags from a TOML file a team can commit.

The keys are the flags without their dashes (``users = 10``, ``duration = "30s"``,
``max-tokens = "100-200"`` or ``max_tokens``); a repeatable flag takes a list
(``target = ["relay=http://127.0.0.1:8080"]``); an on/off flag takes ``true`` (``web = true``).
Values go through the same argparse checks as on the command line. A flag given on the command
line overrides the file's value (for a repeatable flag, its whole list). An unknown key, a
wrong type or a secret (``api-key``: use ``RELAYBENCH_API_KEY`` or ``--api-key-file``) is exit 2
naming the key and the file.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from relaybench.errors import UsageError

SECRETS = ("api_key",)
NOT_IN_FILE = ("config",)


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"--config {path}: cannot read it: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"--config {path}: not valid TOML: {exc}") from None


def file_argv(path: Path, defaults: dict[str, Any]) -> list[str]:
    """The file's keys as command-line arguments (``defaults``: every dest with its default)."""
    argv: list[str] = []
    for key, value in _read(path).items():
        dest = key.replace("-", "_")
        where = f"--config {path}: key {key!r}"
        if dest in SECRETS:
            raise UsageError(
                f"{where}: no secrets in a config file; use RELAYBENCH_API_KEY or --api-key-file"
            )
        if dest not in defaults or dest in NOT_IN_FILE:
            known = ", ".join(sorted(d.replace("_", "-") for d in defaults if d not in SECRETS))
            raise UsageError(f"{where} is not a relaybench run option; the keys are: {known}")
        default = defaults[dest]
        if isinstance(value, bool):
            if default is not False:
                raise UsageError(f"{where}: takes a value, not true/false")
            argv += [_flag(dest)] if value else []
        elif isinstance(value, list):
            if not isinstance(default, list):
                raise UsageError(f"{where}: takes one value, not a list")
            for item in value:
                if isinstance(item, dict | list):
                    raise UsageError(f"{where}: list items must be strings or numbers")
                argv += [_flag(dest), str(item)]
        elif isinstance(value, str | int | float):
            if default is False:
                raise UsageError(f"{where}: an on/off flag: use true or false")
            argv += [_flag(dest), str(value)]  # a repeatable flag given once: a list of one
        else:
            raise UsageError(f"{where}: use a string, a number, true/false or a list")
    return argv


def _given(argv: Sequence[str], dest: str) -> bool:
    flag = _flag(dest)
    return any(a == flag or a.startswith(flag + "=") for a in argv)


def parse_with_config(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """``parser.parse_args(argv)``, with ``--config FILE``'s keys under the command line's."""
    first, _ = parser.parse_known_args(argv)
    path = getattr(first, "config", None)
    if path is None:
        return parser.parse_args(argv)
    defaults = vars(parser.parse_args([]))
    from_file = file_argv(Path(path), defaults)
    try:
        namespace = parser.parse_args(from_file)
    except UsageError as exc:
        raise UsageError(f"--config {path}: {exc.message}") from None
    for dest, default in defaults.items():
        if isinstance(default, list) and _given(argv, dest):
            setattr(namespace, dest, [])  # the command line's list replaces the file's
    # argparse fills in defaults only for what the namespace lacks: the file's values stay
    # unless the command line sets them
    return parser.parse_args(argv, namespace=namespace)
