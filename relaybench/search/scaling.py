"""``--relay-workers 1,2,4``: one search per relay worker count, and what the machine allowed.

Relays with more than one worker share a private ``redis-server`` (``relaybench.procs``: a free
loopback port, stopped by PID, and with us if we are killed), so their rate limits are one set,
as in production.

Scaling efficiency of ``w`` workers = capacity(w) / (w × capacity(1)). On a small machine the
load generator, the mock, Redis and every relay worker share the cores; once the processes that
work during a probe outnumber the cores, a flat curve says nothing about the relay, and the
summary says so.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from relaybench import procs
from relaybench.errors import RelaybenchError


def worker_counts(text: str) -> list[int]:
    """``1,2,4`` -> [1, 2, 4] (an argparse ``type=``)."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use whole numbers, e.g. 1,2,4") from None
    if not counts or min(counts) < 1 or len(set(counts)) != len(counts):
        raise argparse.ArgumentTypeError(f"{text!r}: use distinct counts of at least 1, e.g. 1,2,4")
    return sorted(counts)


@contextmanager
def redis_server() -> Iterator[str]:
    """The relays' shared redis-server (``relaybench.procs.redis_server``: owned, stopped by
    PID, and with the search if that is killed); yields its URL."""
    if shutil.which("redis-server") is None:
        raise RelaybenchError(
            "--relay-workers above 1 needs redis-server "
            "(python -m tools.ensure_binaries installs it)"
        )
    with procs.redis_server() as url:
        yield url


def scaling(
    capacities: dict[int, float | None],
    statuses: dict[int, str],
    cpus: int,
    at_least: dict[int, float | None] | None = None,
) -> dict:
    """Capacity per worker count (``at_least``: the highest pass where none was found),
    efficiency against one worker, and the cores' verdict."""
    base = capacities.get(1)
    rows = []
    for workers, capacity in sorted(capacities.items()):
        efficiency = None
        if base and capacity is not None:
            efficiency = round(capacity / (workers * base), 3)
        busy = workers + 2  # the relay's workers, the load generator and the mock
        rows.append(
            {
                "workers": workers,
                "capacity": capacity,
                "at_least": (at_least or {}).get(workers),
                "status": statuses.get(workers),
                "efficiency": efficiency,
                "processes_per_core": round(busy / cpus, 2),
                "core_bound": busy > cpus,
            }
        )
    bound = [r["workers"] for r in rows if r["core_bound"]]
    if bound:
        verdict = (
            f"This machine has {cpus} core(s). From {min(bound)} worker(s) the load generator, "
            f"the mock and the relay's workers ({min(bound) + 2} busy processes) outnumber them: "
            "there the cores, not the relay, set the limit, so the efficiency measured says "
            "nothing about how the relay scales. Measure scaling on a machine with at least "
            "workers + 2 cores, or with the load generator and the mock elsewhere."
        )
    else:
        verdict = f"Every worker count had a core of its own ({cpus} cores)."
    return {"cpus": cpus, "rows": rows, "verdict": verdict}
