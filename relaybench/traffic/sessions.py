"""Prompts of a given size, and seeded chat sessions whose prompt grows every turn.

Sizes are counted the way the mock counts them: a prompt of ``n`` tokens is ``4 * n`` characters
of message content in all (system prompt included). Text is cut from one seeded block of English
words at a seeded offset, so two requests rarely share a prefix beyond the system prompt (a
server's prefix cache sees what it would see in production: the shared system prompt).

A chat session is a pure function of ``(seed, session id)``: its number of turns, each user
message's length and each answer's ``max_tokens`` are drawn when it is created. Each turn sends
the whole history — the system prompt, the earlier user messages and the answers *actually
received* — then the new user message, so the prompt grows by what the target really answered.

Turns per session follow a log-normal distribution rounded to whole turns (at least 1): its
median is ``turns_median`` (3 by default) and ``turns_sigma`` sets the long tail (1.0: about
one session in eight has 10 turns or more), capped at ``turns_max``.

Between two turns the user reads the answer and types the next message: the think time is
``(answer_tokens * read_s_per_token + next_message_chars * type_s_per_char) * jitter`` with a
seeded log-normal ``jitter`` (median 1, ``think_sigma``). The defaults read and type about ten
times faster than people do (people: ~0.2 s a token, ~0.2 s a character) so a run of minutes sees
several turns per session; set them to human speeds for a realistic number of users in flight.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import cache
from typing import Any

from relaybench.errors import UsageError

CHARS_PER_TOKEN = 4  # the mock's count: tokens = ceil(characters / 4)
SYSTEM_PROMPT = (
    "You are the shopping assistant of an online store. Answer the customer's questions about "
    "products, orders, delivery and returns briefly, accurately and politely."
)
MIN_USER_CHARS = 16  # a turn whose history already fills its size still says something

_VOCABULARY = (
    "order delivery size colour price return refund cart address payment card shipping fast "
    "cheap quality cotton shirt shoes jacket bag phone case charger cable laptop screen "
    "warranty store stock available today tomorrow week discount coupon code gift wrap invoice "
    "receipt track parcel courier late damaged exchange model brand black white blue red green "
    "small medium large please thanks hello could would should when where which what how why "
    "the a is are was my your this that it for with from to of and or not can I you we"
)
_BLOCK_CHARS = 1 << 18


@cache
def _block() -> str:
    rng = random.Random(20231116)
    vocabulary = _VOCABULARY.split()
    words: list[str] = []
    size = 0
    while size < _BLOCK_CHARS:
        w = rng.choice(vocabulary)
        words.append(w)
        size += len(w) + 1
    return " ".join(words)[:_BLOCK_CHARS]


def text(chars: int, key: str) -> str:
    """Exactly ``chars`` characters of filler text; the same ``key`` gives the same text."""
    if chars <= 0:
        return ""
    block = _block()
    start = random.Random(key).randrange(len(block))
    out = block[start : start + chars]
    while len(out) < chars:
        out += " " + block[: chars - len(out) - 1]
    return out[:chars]


def content_chars(messages: list[dict[str, Any]]) -> int:
    return sum(len(m["content"]) for m in messages)


def tokens_of(chars: int) -> int:
    return max(1, math.ceil(chars / CHARS_PER_TOKEN))


def sized_messages(
    tokens: int, key: str, history: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Messages whose content adds up to ``tokens`` tokens: the system prompt (when it fits),
    ``history``, then a user message filling the rest (at least ``MIN_USER_CHARS`` characters
    when there is history, so a long history makes the prompt larger than asked)."""
    want = tokens * CHARS_PER_TOKEN
    head: list[dict[str, Any]] = []
    if history:
        head = list(history)
    elif want >= len(SYSTEM_PROMPT) + MIN_USER_CHARS:
        head = [{"role": "system", "content": SYSTEM_PROMPT}]
    rest = want - content_chars(head)
    floor = MIN_USER_CHARS if history else 1
    return [*head, {"role": "user", "content": text(max(floor, rest), key)}]


@dataclass(frozen=True)
class ChatConfig:
    """How chat sessions are drawn (see the module docstring)."""

    turns_median: float = 3.0
    turns_sigma: float = 1.0
    turns_max: int = 50
    user_tokens_median: float = 40.0  # each new user message, log-normal
    user_tokens_sigma: float = 0.8
    user_tokens_max: int = 4000
    answer_tokens: tuple[int, int] = (100, 200)  # max_tokens of each answer, uniform, inclusive
    read_s_per_token: float = 0.02
    type_s_per_char: float = 0.02
    think_sigma: float = 0.3

    def check(self) -> None:
        for name in ("turns_median", "user_tokens_median"):
            if not getattr(self, name) >= 1:
                raise UsageError(f"chat {name} {getattr(self, name):g}: must be >= 1")
        for name in ("turns_sigma", "user_tokens_sigma", "think_sigma"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise UsageError(f"chat {name} {v:g}: must be >= 0")
        for name in ("read_s_per_token", "type_s_per_char"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise UsageError(f"chat {name} {v:g}: must be >= 0 seconds")
        if self.turns_max < 1 or self.user_tokens_max < 1:
            raise UsageError("chat turns_max and user_tokens_max must be >= 1")
        lo, hi = self.answer_tokens
        if not 1 <= lo <= hi:
            raise UsageError(f"chat answer_tokens {lo}-{hi}: need 1 <= low <= high")


@dataclass(frozen=True)
class Turn:
    index: int  # 0-based
    user_chars: int
    max_tokens: int
    jitter: float  # the think time's factor before this turn (unused for turn 0)


class Session:
    """One seeded conversation: ask ``messages(turn)``, then tell it ``answered(turn, text)``."""

    def __init__(self, config: ChatConfig, seed: int, session_id: int) -> None:
        self.config = config
        self.id = session_id
        self.key = f"chat:{seed}:{session_id}"
        rng = random.Random(self.key)
        n = round(rng.lognormvariate(math.log(config.turns_median), config.turns_sigma))
        n = max(1, min(config.turns_max, n))
        lo, hi = config.answer_tokens
        turns = []
        for i in range(n):
            user = rng.lognormvariate(math.log(config.user_tokens_median), config.user_tokens_sigma)
            user_tokens = max(1, min(config.user_tokens_max, round(user)))
            turns.append(
                Turn(
                    index=i,
                    user_chars=user_tokens * CHARS_PER_TOKEN,
                    max_tokens=rng.randint(lo, hi),
                    jitter=rng.lognormvariate(0.0, config.think_sigma),
                )
            )
        self.turns = tuple(turns)
        self.history: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT}]

    def __len__(self) -> int:
        return len(self.turns)

    def messages(self, turn: int) -> list[dict[str, Any]]:
        """What turn ``turn`` sends: the whole history, then its new user message."""
        t = self.turns[turn]
        return [*self.history, self._user(t)]

    def answered(self, turn: int, answer: str) -> None:
        """Turn ``turn`` ended with ``answer`` (what arrived; "" when nothing did). Both the user
        message and that answer join the history the next turn sends."""
        self.history.append(self._user(self.turns[turn]))
        if answer:
            self.history.append({"role": "assistant", "content": answer})

    def think_s(self, turn: int, answer_tokens: int) -> float:
        """Seconds from the end of turn ``turn - 1`` (``answer_tokens`` long) to turn ``turn``."""
        t = self.turns[turn]
        cfg = self.config
        base = answer_tokens * cfg.read_s_per_token + t.user_chars * cfg.type_s_per_char
        return base * t.jitter

    def _user(self, t: Turn) -> dict[str, Any]:
        return {"role": "user", "content": text(t.user_chars, f"{self.key}:{t.index}")}
