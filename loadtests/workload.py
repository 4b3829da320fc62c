"""The seeded workload: which prompt and which ``max_tokens`` each request sends.

Request ``seq`` of load-generator process ``index`` is a pure function of ``(seed, index, seq)``,
so every target of a run (and every run with the same seed) sends the same requests in the same
order: comparisons between targets are fair. Most requests use the bundled e-commerce chat
prompts (Vietnamese and English, ``prompts.json``); the rest are synthetic prompts whose length
follows a seeded log-normal distribution. Output length is asked through ``max_tokens``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import orjson

SYNTHETIC_SHARE = 0.3
SYNTHETIC_WORDS_MEDIAN = 40  # words; log-normal, sigma below
SYNTHETIC_WORDS_SIGMA = 0.8
SYNTHETIC_WORDS_MAX = 2000


@dataclass(frozen=True)
class WorkloadConfig:
    seed: int
    model: str = "relaybench-mock"
    max_tokens: tuple[int, int] | None = (100, 200)  # inclusive range; None: do not ask
    include_usage: bool = True


@cache
def bundled() -> dict[str, Any]:
    return orjson.loads(resources.files("loadtests").joinpath("prompts.json").read_bytes())


class Workload:
    """Request bodies for one load-generator process."""

    def __init__(self, config: WorkloadConfig, index: int) -> None:
        self.config = config
        self.index = index
        data = bundled()
        self._system = data["system"]
        self._prompts = [p["text"] for p in data["prompts"]]
        self._words = data["synthetic_words"]

    def request(self, seq: int, *, stream: bool) -> tuple[dict[str, Any], int | None]:
        """The body of request ``seq`` and its ``max_tokens``."""
        cfg = self.config
        rng = random.Random((cfg.seed * 1_000_003 + self.index) * 1_000_003 + seq)
        if rng.random() < SYNTHETIC_SHARE:
            words = rng.lognormvariate(0, SYNTHETIC_WORDS_SIGMA) * SYNTHETIC_WORDS_MEDIAN
            n = max(1, min(SYNTHETIC_WORDS_MAX, round(words)))
            prompt = " ".join(rng.choice(self._words) for _ in range(n))
        else:
            prompt = rng.choice(self._prompts)
        body: dict[str, Any] = {
            "model": cfg.model,
            "messages": [
                {"role": "system", "content": self._system},
                {"role": "user", "content": prompt},
            ],
            "stream": stream,
        }
        max_tokens = None
        if cfg.max_tokens is not None:
            lo, hi = cfg.max_tokens
            max_tokens = rng.randint(lo, hi)
            body["max_tokens"] = max_tokens
        if stream and cfg.include_usage:
            body["stream_options"] = {"include_usage": True}
        return body, max_tokens
