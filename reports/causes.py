"""The top causes of a target's failed requests: summary.json ``error_causes``.

A cause is ``relaybench.records.cause``: the first line of a record's ``error_detail`` (for an
HTTP error ``HTTP 401: <the body's message>``, for a transport error the exception), so "5297
errors" reads as "5297× HTTP 401: missing credentials: send Authorization: Bearer …".
"""

from __future__ import annotations

import pandas as pd

from relaybench import records
from relaybench.records import ErrorCause

TOP = 10


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def error_causes(rows: pd.DataFrame, top: int = TOP) -> list[ErrorCause]:
    """The ``top`` most frequent causes among the failed ``rows``, most frequent first."""
    failed = rows[~rows["ok"].to_numpy(dtype=bool)]
    if failed.empty:
        return []
    groups = failed.groupby(["error", "status", "error_detail"], dropna=False).size()
    tally: dict[str, ErrorCause] = {}
    for (error, status, detail), count in groups.items():
        code = int(status) if pd.notna(status) else None
        cause = records.cause(_text(error), code, _text(detail))
        entry = tally.setdefault(
            cause,
            {"cause": cause, "error": _text(error) or records.UNKNOWN, "status": code, "count": 0},
        )
        entry["count"] += int(count)
    ranked = sorted(tally.values(), key=lambda c: (-c["count"], c["cause"]))
    return ranked[:top]
