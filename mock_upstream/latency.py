"""Seeded latency and length model: named distributions and the per-request plan.

Every random draw of a request comes from one ``random.Random(seed)`` in a fixed order (fault,
output length, TTFT, gaps), so the same seed always yields the same plan. The plan holds
*offsets*; the server turns them into absolute deadlines (``first + sum of gaps``), so late
wake-ups never accumulate.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

DISTRIBUTIONS = ("constant", "uniform", "normal", "lognormal", "exponential")
MAX_OUTPUT_TOKENS = 100_000  # a plan holds every token; no request may ask for unbounded memory


@dataclass(frozen=True)
class Distribution:
    """A non-negative random quantity: ``mean`` and ``spread`` in the quantity's own unit.

    ``spread`` is the half-width for ``uniform``, the standard deviation for ``normal`` (clipped
    at 0) and ``lognormal`` (whose mean is ``mean``); ``constant`` and ``exponential`` ignore it.
    """

    kind: str = "constant"
    mean: float = 0.0
    spread: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in DISTRIBUTIONS:
            raise ValueError(f"unknown distribution {self.kind!r}; choose from {DISTRIBUTIONS}")
        if self.mean < 0 or self.spread < 0:
            raise ValueError("mean and spread must be >= 0")

    def with_mean(self, mean: float) -> Distribution:
        return Distribution(self.kind, mean, self.spread)

    def sample(self, rng: random.Random) -> float:
        mean, spread = self.mean, self.spread
        kind = self.kind
        if kind == "constant" or mean == 0:
            return mean
        if kind == "uniform":
            return rng.uniform(max(0.0, mean - spread), mean + spread)
        if kind == "normal":
            return max(0.0, rng.gauss(mean, spread))
        if kind == "lognormal":
            sigma2 = math.log1p((spread / mean) ** 2)
            return rng.lognormvariate(math.log(mean) - sigma2 / 2, math.sqrt(sigma2))
        return rng.expovariate(1.0 / mean)  # exponential


@dataclass(frozen=True)
class Plan:
    """What one request will do: times in seconds, tokens as vocabulary indices."""

    seed: int
    ttft_s: float  # from admission to the first content chunk (prefill included)
    gaps_s: tuple[float, ...]  # between consecutive tokens; len == len(tokens) - 1
    tokens: tuple[int, ...]
    finish_reason: str  # "length" when max_tokens cut the answer, else "stop"


def make_plan(
    rng: random.Random,
    *,
    seed: int,
    ttft_ms: Distribution,
    itl_ms: Distribution,
    output_tokens: Distribution,
    vocab_size: int,
    prompt_tokens: int = 0,
    prefill_ms_per_token: float = 0.0,
    max_tokens: int | None = None,
    use_max_tokens: bool = False,
    fixed_output_tokens: int | None = None,
) -> Plan:
    """Draw a request's plan. ``rng`` must be fresh from ``seed`` (or positioned identically).

    Output length: ``fixed_output_tokens`` (a header) wins; else ``max_tokens`` when
    ``use_max_tokens``; else a draw from ``output_tokens`` (at least 1). ``max_tokens`` then
    caps it, giving ``finish_reason == "length"``. Nothing exceeds ``MAX_OUTPUT_TOKENS``.
    """
    if fixed_output_tokens is not None:
        wanted = fixed_output_tokens
    elif use_max_tokens and max_tokens is not None:
        wanted = max_tokens
    else:
        wanted = max(1, round(output_tokens.sample(rng)))
    finish = "stop"
    n = min(wanted, MAX_OUTPUT_TOKENS)
    if max_tokens is not None and (n > max_tokens or use_max_tokens):
        n, finish = min(n, max_tokens), "length"
    ttft = ttft_ms.sample(rng) + prefill_ms_per_token * prompt_tokens
    gaps = tuple(itl_ms.sample(rng) / 1000.0 for _ in range(max(0, n - 1)))
    tokens = tuple(rng.choices(range(vocab_size), k=n))
    return Plan(seed, ttft / 1000.0, gaps, tokens, finish)
