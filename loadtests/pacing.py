"""The pause a closed-loop user takes after a failed request, so a misconfigured run (a wrong
key, a wrong path) sends a trickle of errors, not thousands a second.

After a request that failed with anything but ``connect`` (``loadtests.client`` backs off those
itself), the user waits ``ERROR_PAUSE_S`` with ±``JITTER`` (seeded, so users do not move in
lockstep), or the ``Retry-After`` the answer carried, at most ``RETRY_AFTER_CAP_S``, before its
next request. The pause is written into the failed request's record as ``error_pause_ms`` and
comes after the record is built, so it is in no latency and is no think time.

Not paced: open-loop users (their arrival schedule sets the pace, whatever the answers) and
runs with a ``--retry-policy`` (the policy is the client's behaviour on errors).
"""

from __future__ import annotations

import itertools
import random
import time
from typing import Any

import gevent

from relaybench import records
from relaybench.run.config import LoadConfig
from relaybench.traffic import retry

ERROR_PAUSE_S = 1.0
JITTER = 0.5  # the pause is ERROR_PAUSE_S x uniform(1 - JITTER, 1 + JITTER)
RETRY_AFTER_CAP_S = 5.0
_users = itertools.count()  # numbers this process's users for their jitter seeds


def paced(cfg: LoadConfig) -> bool:
    """Whether the users of this run pause after errors."""
    return not cfg.shape.open_loop and not cfg.traffic.retry.enabled


class ErrorPause:
    """One user's pause after its failed requests."""

    def __init__(self, cfg: LoadConfig, index: int) -> None:
        self.enabled = paced(cfg)
        self._rng = random.Random(f"pause:{cfg.seed}:{index}:{next(_users)}")

    def after(self, rec: dict[str, Any], retry_after: str | None) -> float:
        """Seconds to pause after the request ``rec`` (0: none); records it in ``rec``."""
        if not self.enabled or rec["ok"] or rec["error"] == records.CONNECT:
            return 0.0
        asked = retry.parse_retry_after(retry_after, time.time())
        if asked is not None:
            seconds = min(asked, RETRY_AFTER_CAP_S)
        else:
            seconds = ERROR_PAUSE_S * self._rng.uniform(1 - JITTER, 1 + JITTER)
        rec["error_pause_ms"] = round(seconds * 1e3, 3)
        return seconds


def pause(seconds: float) -> None:
    """Sleep until ``seconds`` from now (one deadline, not a sum of sleeps)."""
    deadline = time.perf_counter() + seconds
    while (left := deadline - time.perf_counter()) > 0:
        gevent.sleep(left)
