"""Errors that carry their own exit code and message (in the manner of click).

    RelaybenchError        exit 1  — something failed (a run, a threshold, a server)
    └── UsageError         exit 2  — bad command line, unreadable or unusable input

Command entry points raise these; ``relaybench.cli.main`` prints ``error: <message>`` to stderr
and exits with the code. Nothing else in the project calls ``sys.exit`` with a bare number.
"""

from __future__ import annotations


class RelaybenchError(Exception):
    """A failure that ends a command with a message and ``exit_code``."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(RelaybenchError):
    """Bad usage or unreadable data: exit code 2."""

    exit_code = 2
