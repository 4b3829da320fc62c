"""Prompts of a given size and seeded chat sessions."""

from __future__ import annotations

import math
import statistics

import pytest

from relaybench.errors import UsageError
from relaybench.traffic import sessions
from relaybench.traffic.sessions import ChatConfig, Session


def tokens(messages: list[dict]) -> int:
    """How the mock counts a prompt: ceil(characters / 4), at least 1."""
    return max(1, math.ceil(sum(len(m["content"]) for m in messages) / 4))


def test_text_is_exact_and_keyed() -> None:
    for n in (0, 1, 7, 4000, 300_000):  # beyond the block size, too
        assert len(sessions.text(n, "k")) == n
    assert sessions.text(500, "a") == sessions.text(500, "a")
    assert sessions.text(500, "a") != sessions.text(500, "b")


@pytest.mark.parametrize("n", [1, 2, 10, 44, 45, 374, 14050])
def test_sized_messages_hit_the_token_count(n: int) -> None:
    msgs = sessions.sized_messages(n, f"row:{n}")
    assert tokens(msgs) == n
    assert msgs[-1]["role"] == "user"
    if n * 4 >= len(sessions.SYSTEM_PROMPT) + sessions.MIN_USER_CHARS:
        assert msgs[0] == {"role": "system", "content": sessions.SYSTEM_PROMPT}


def test_sized_messages_after_history() -> None:
    history = [{"role": "system", "content": "s" * 40}, {"role": "user", "content": "u" * 360}]
    assert tokens(sessions.sized_messages(200, "k", history)) == 200
    small = sessions.sized_messages(10, "k", history)  # history alone is 100 tokens
    assert small[:2] == history and len(small[-1]["content"]) == sessions.MIN_USER_CHARS


def test_session_is_seeded() -> None:
    cfg = ChatConfig()
    a, b, c = Session(cfg, 1, 5), Session(cfg, 1, 5), Session(cfg, 2, 5)
    assert a.turns == b.turns
    assert a.messages(0) == b.messages(0)
    assert (a.turns, a.messages(0)) != (c.turns, c.messages(0))


def test_turns_follow_the_distribution() -> None:
    counts = [len(Session(ChatConfig(), 1, i)) for i in range(3000)]
    assert statistics.median(counts) == 3
    assert min(counts) >= 1 and max(counts) <= 50
    long_tail = sum(c >= 10 for c in counts) / len(counts)
    assert 0.08 < long_tail < 0.17  # lognormal sigma 1: P(X >= 9.5) = 0.125
    fixed = [len(Session(ChatConfig(turns_median=4, turns_sigma=0), 1, i)) for i in range(50)]
    assert set(fixed) == {4}


def test_second_turn_carries_the_first_answer_verbatim() -> None:
    s = Session(ChatConfig(turns_median=5, turns_sigma=0), 3, 1)
    first = s.messages(0)
    assert [m["role"] for m in first] == ["system", "user"]
    answer = "Your parcel left the warehouse this morning. 📦"
    s.answered(0, answer)
    second = s.messages(1)
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert second[:2] == first
    assert second[2] == {"role": "assistant", "content": answer}
    assert len(second[3]["content"]) == s.turns[1].user_chars
    assert tokens(second) > tokens(first)
    s.answered(1, "")  # nothing arrived: the question stays, no empty answer is invented
    assert [m["role"] for m in s.messages(2)] == ["system", "user", "assistant", "user", "user"]


def test_think_time_is_read_plus_type_times_jitter() -> None:
    cfg = ChatConfig(turns_median=3, turns_sigma=0, read_s_per_token=0.1, type_s_per_char=0.01)
    s = Session(cfg, 1, 1)
    t = s.turns[1]
    assert s.think_s(1, 150) == pytest.approx((150 * 0.1 + t.user_chars * 0.01) * t.jitter)
    assert s.think_s(1, 300) > s.think_s(1, 150)
    flat = Session(ChatConfig(think_sigma=0, turns_sigma=0), 1, 1)
    assert flat.turns[1].jitter == 1.0


def test_max_tokens_within_range() -> None:
    cfg = ChatConfig(answer_tokens=(10, 20))
    got = {t.max_tokens for i in range(100) for t in Session(cfg, 1, i).turns}
    assert min(got) >= 10 and max(got) <= 20 and len(got) > 5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"turns_median": 0},
        {"turns_sigma": -1},
        {"read_s_per_token": -0.1},
        {"type_s_per_char": float("nan")},
        {"turns_max": 0},
        {"answer_tokens": (20, 10)},
        {"answer_tokens": (0, 10)},
    ],
)
def test_bad_chat_config(kwargs: dict) -> None:
    with pytest.raises(UsageError):
        ChatConfig(**kwargs).check()
