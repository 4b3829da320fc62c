"""The API key and TLS trust of ``relaybench run`` (and the key of ``relaybench faults`` and
``search``): where they come from, and keeping the key out of every output.

The key is taken from ``--api-key KEY``, else ``--api-key-file PATH`` (its first line), else the
``RELAYBENCH_API_KEY`` environment variable. A key on the command line is visible to other users
in ``ps``; the file and the variable are not. Whatever its source, the key is never written: the
command stored in ``run.json`` (and so in ``summary.json`` and the reports) shows ``***`` in its
place, the config file the Locust process reads has no key (``LoadConfig.dump``), and the key
reaches that process in its environment (``child_env``).

Files the orchestrator must hand to its children live in ``private_tempdir()``, a directory named
after our PID; ``remove_stale_tempdirs()`` deletes those a killed run (SIGKILL, a CI timeout)
left behind, only for PIDs that no longer run.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import ssl
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from relaybench.errors import UsageError

API_KEY_ENV = "RELAYBENCH_API_KEY"
REDACTED = "***"
TEMP_PREFIX = "relaybench-"
_OURS = re.compile(rf"^{TEMP_PREFIX}(?:[a-z]+-)?(\d+)-")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s]*@")
# ``--header NAME:VALUE`` words whose value is a credential
_SECRET_HEADER = re.compile(
    r"(?i)^((?:--header=)?\s*(?:authorization|proxy-authorization|x-api-key|api-key|cookie)\s*:).+$"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--api-key``, ``--api-key-file``, ``--ca-file`` and ``--insecure``."""
    add_key_arguments(parser)
    parser.add_argument(
        "--ca-file",
        type=Path,
        metavar="PEM",
        help="trust these CA certificates for https targets instead of the system's",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify https targets' certificates or host names (prints a warning)",
    )


def add_key_arguments(parser: argparse.ArgumentParser) -> None:
    """``--api-key`` and ``--api-key-file`` (``relaybench faults`` has no TLS options)."""
    parser.add_argument(
        "--api-key",
        help=f"Bearer key sent to --target URLs (default: ${API_KEY_ENV}); never written to any "
        "output (shown as ***)",
    )
    parser.add_argument(
        "--api-key-file",
        type=Path,
        metavar="PATH",
        help="read the Bearer key from this file's first line (keeps it out of `ps`)",
    )


def api_key(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> str | None:
    """The key from ``--api-key``, ``--api-key-file`` or ``RELAYBENCH_API_KEY`` (in that order)."""
    if args.api_key is not None and args.api_key_file is not None:
        raise UsageError("--api-key and --api-key-file: give one of them")
    if args.api_key is not None:
        if not args.api_key.strip():
            raise UsageError("--api-key is empty")
        return args.api_key
    if args.api_key_file is not None:
        path = args.api_key_file
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--api-key-file {path}: cannot read it: {_why(exc)}") from None
        key = lines[0].strip() if lines else ""
        if not key:
            raise UsageError(f"--api-key-file {path}: the first line is empty")
        return key
    return (os.environ if environ is None else environ).get(API_KEY_ENV) or None


def ca_file(args: argparse.Namespace) -> str | None:
    """``--ca-file`` checked now (a usage error, not a connect error per request later)."""
    path: Path | None = args.ca_file
    if path is None:
        return None
    if args.insecure:
        raise UsageError("--ca-file and --insecure: --insecure checks no certificate at all")
    try:
        ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(
            f"--ca-file {path}: not a readable PEM of CA certificates: {_why(exc)}"
        ) from None
    return str(path.resolve())


def _why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def redacted_text(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***``.

    By value, so a key is hidden wherever it appears: ``--api-key=K`` or any other spelling of
    the command, or a target's answer that quotes the key it was sent (an error body, a stream's
    error event, an exception's text)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def redact_url(text: str) -> str:
    """``text`` with every URL's ``user:password@`` as ``***@`` (``https://***@host/…``): what
    messages and files show of a URL that carries credentials (a ``--target``, a ``--scrape``).

    Up to the URL's last ``@`` before its path, as ``urlsplit`` reads the host, so a password
    holding an ``@`` is hidden whole; ``NAME=URL`` and URLs inside a message are covered too."""
    return _USERINFO.sub(rf"\1{REDACTED}@", text)


def redacted_words(words: Sequence[str], secrets: Iterable[str | None]) -> list[str]:
    """``words`` with every occurrence of each secret, every URL's credentials (``redact_url``)
    and the value of every credential header (``--header "Authorization: …"``) as ``***``."""
    hidden = [s for s in secrets if s]
    return [
        _SECRET_HEADER.sub(rf"\1 {REDACTED}", redacted_text(redact_url(word), hidden))
        for word in words
    ]


def redacted_command(words: Sequence[str], secrets: Iterable[str | None]) -> str:
    """The command line to store: ``shlex.join`` of ``redacted_words``."""
    return shlex.join(redacted_words(words, secrets))


def child_env(key: str | None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Our environment for a Locust process, with ``RELAYBENCH_API_KEY`` set to exactly ``key``
    (removed when there is none: a key of the user's must not reach an unkeyed target)."""
    env = {k: v for k, v in (os.environ if environ is None else environ).items()}
    env.pop(API_KEY_ENV, None)
    if key:
        env[API_KEY_ENV] = key
    return env


def private_tempdir(kind: str = "") -> tempfile.TemporaryDirectory[str]:
    """An owner-only temporary directory named after our PID: ``relaybench-[KIND-]PID-…``."""
    middle = f"{kind}-" if kind else ""
    return tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{middle}{os.getpid()}-")


def remove_stale_tempdirs(root: Path | None = None) -> list[Path]:
    """Delete our temporary directories whose PID no longer runs; returns what was deleted."""
    base = Path(root or tempfile.gettempdir())
    removed = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    for path in entries:
        match = _OURS.match(path.name)
        if match is None or not path.is_dir() or path.is_symlink():
            continue
        try:
            if path.stat().st_uid != os.getuid() or _alive(int(match.group(1))):
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
