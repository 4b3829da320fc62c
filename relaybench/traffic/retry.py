"""The client's retry policy: pure decisions, seeded jitter.

``--retry-policy none`` sends every user request once. ``seed`` is the front end of the story:
up to 3 retries on network errors (no connection, a read timeout, a connection cut), 429 and
5xx, but only while no content has arrived; exponential backoff from 1 s (1, 2, 4 s caps) with
full jitter (a uniform wait between 0 and the cap); a ``Retry-After`` from the server is honoured
(the wait is at least what it asks; one above ``max_retry_after_s`` ends the request instead).
Once content has arrived the user has seen an answer start: it is never retried.

``--retry-policy FILE`` reads a TOML file with the same knobs (every key optional)::

    max_retries = 3              # retries after the first attempt (0: none)
    base_s = 1.0                 # the first backoff cap
    multiplier = 2.0             # each retry's cap is the previous one times this
    max_backoff_s = 30.0         # caps never exceed this
    jitter = "full"              # "full": uniform in [0, cap]; "equal": [cap/2, cap]; "none": cap
    retry_after = true           # honour Retry-After (seconds or an HTTP date)
    max_retry_after_s = 60.0     # a longer Retry-After: give up instead of waiting
    retry_on = ["connect", "timeout", "truncated", "http_429", "http_5xx"]   # error types

``next_wait`` is the whole decision: given the attempt that just ended, wait this long and try
again, or stop. The load generator does the waiting (against a deadline) and the bookkeeping.
"""

from __future__ import annotations

import math
import random
import tomllib
from dataclasses import dataclass, fields
from email.utils import parsedate_to_datetime
from pathlib import Path

from relaybench import records as r
from relaybench.errors import UsageError

# The error types a retry can answer (a malformed answer is the server's bug: not retried).
RETRYABLE = (r.CONNECT, r.TIMEOUT, r.TRUNCATED, r.HTTP_429, r.HTTP_5XX, r.HTTP_4XX, r.STREAM_ERROR)
JITTERS = ("full", "equal", "none")


@dataclass(frozen=True)
class RetryPolicy:
    name: str = "seed"
    max_retries: int = 3
    base_s: float = 1.0
    multiplier: float = 2.0
    max_backoff_s: float = 30.0
    jitter: str = "full"
    retry_after: bool = True
    max_retry_after_s: float = 60.0
    retry_on: tuple[str, ...] = (r.CONNECT, r.TIMEOUT, r.TRUNCATED, r.HTTP_429, r.HTTP_5XX)

    @property
    def enabled(self) -> bool:
        return self.max_retries > 0

    def cap_s(self, attempt: int) -> float:
        """The backoff cap after attempt ``attempt`` (1-based) failed."""
        return min(self.max_backoff_s, self.base_s * self.multiplier ** (attempt - 1))


NONE = RetryPolicy(name="none", max_retries=0)
SEED = RetryPolicy()


@dataclass(frozen=True)
class Outcome:
    """What one attempt ended with, as far as a retry decision cares."""

    error: str | None  # an error type of the taxonomy, None for success
    content: bool = False  # some answer content arrived
    retry_after_s: float | None = None


def next_wait(
    policy: RetryPolicy, attempt: int, outcome: Outcome, rng: random.Random
) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``, or None: the user request is over."""
    if outcome.error is None or outcome.content or outcome.error not in policy.retry_on:
        return None
    if attempt > policy.max_retries:
        return None
    cap = policy.cap_s(attempt)
    if policy.jitter == "full":
        wait = rng.uniform(0.0, cap)
    elif policy.jitter == "equal":
        wait = rng.uniform(cap / 2, cap)
    else:
        wait = cap
    if policy.retry_after and outcome.retry_after_s is not None:
        if outcome.retry_after_s > policy.max_retry_after_s:
            return None
        wait = max(wait, outcome.retry_after_s)
    return wait


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """A ``Retry-After`` header (delay seconds or an HTTP date) as seconds from ``now_s`` (Unix
    time); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now_s
        except (TypeError, ValueError, IndexError):
            return None
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def rng_for(seed: int, process: int, seq: int) -> random.Random:
    """The jitter source of one user request: the same on every target of a run."""
    return random.Random(f"retry:{seed}:{process}:{seq}")


def resolve(spec: str) -> RetryPolicy:
    """``none``, ``seed`` or a TOML file with the knobs above."""
    if spec == "none":
        return NONE
    if spec == "seed":
        return SEED
    return load(Path(spec))


def load(path: Path) -> RetryPolicy:
    name = str(path)
    if not path.is_file():
        raise UsageError(f"--retry-policy {name}: not 'none', 'seed' or a readable TOML file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"retry policy {name}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"retry policy {name}: not TOML: {exc}") from None
    known = {f.name: f for f in fields(RetryPolicy) if f.name != "name"}
    values: dict[str, object] = {"name": name}
    for key, v in raw.items():
        if key not in known:
            raise UsageError(
                f"retry policy {name}: unknown key {key!r} (known: {', '.join(known)})"
            )
        values[key] = _typed(name, key, v)
    policy = RetryPolicy(**values)  # type: ignore[arg-type]
    check(policy)
    return policy


def _typed(name: str, key: str, v: object) -> object:
    where = f"retry policy {name}: {key}"
    if key == "max_retries":
        if type(v) is not int:
            raise UsageError(f"{where}: {v!r} is not a whole number")
        return v
    if key == "retry_after":
        if type(v) is not bool:
            raise UsageError(f"{where}: {v!r} is not true or false")
        return v
    if key == "jitter":
        if v not in JITTERS:
            raise UsageError(f"{where}: {v!r} is not one of {', '.join(JITTERS)}")
        return v
    if key == "retry_on":
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise UsageError(f"{where}: must be a list of error types")
        for x in v:
            if x not in RETRYABLE:
                raise UsageError(f"{where}: {x!r} is not one of {', '.join(RETRYABLE)}")
        return tuple(v)
    if type(v) not in (int, float):
        raise UsageError(f"{where}: {v!r} is not a number")
    return float(v)  # type: ignore[arg-type]


def check(policy: RetryPolicy) -> None:
    where = f"retry policy {policy.name}"
    if not 0 <= policy.max_retries <= 20:
        raise UsageError(f"{where}: max_retries {policy.max_retries}: must be 0..20")
    for key in ("base_s", "max_backoff_s", "max_retry_after_s"):
        v = getattr(policy, key)
        if not (math.isfinite(v) and v >= 0):
            raise UsageError(f"{where}: {key} {v:g}: must be >= 0 seconds")
    if not (math.isfinite(policy.multiplier) and policy.multiplier >= 1):
        raise UsageError(f"{where}: multiplier {policy.multiplier:g}: must be >= 1")
