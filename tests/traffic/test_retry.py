"""The retry policy's decisions: who is retried, how long the waits are, what a file may say."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest

from relaybench.errors import UsageError
from relaybench.traffic import retry
from relaybench.traffic.retry import Outcome, next_wait

SEED = retry.SEED


def waits(policy: retry.RetryPolicy, outcome: Outcome, seed: int = 1) -> list[float]:
    """The waits of one user request whose every attempt ends with ``outcome``."""
    rng = random.Random(seed)
    out: list[float] = []
    attempt = 1
    while (w := next_wait(policy, attempt, outcome, rng)) is not None:
        out.append(w)
        attempt += 1
    return out


@pytest.mark.parametrize("error", ["connect", "timeout", "truncated", "http_429", "http_5xx"])
def test_seed_retries_three_times_before_content(error: str) -> None:
    assert len(waits(SEED, Outcome(error))) == 3


@pytest.mark.parametrize("error", ["http_4xx", "malformed", "stream_error"])
def test_seed_does_not_retry_other_errors(error: str) -> None:
    assert waits(SEED, Outcome(error)) == []


@pytest.mark.parametrize("error", ["truncated", "http_5xx", "timeout"])
def test_never_after_content(error: str) -> None:
    assert waits(SEED, Outcome(error, content=True)) == []


def test_success_ends_the_request() -> None:
    assert next_wait(SEED, 1, Outcome(None), random.Random(1)) is None


def test_none_never_retries() -> None:
    assert waits(retry.NONE, Outcome("http_429")) == []


def test_full_jitter_within_exponential_caps() -> None:
    caps = [1.0, 2.0, 4.0]
    seen: list[list[float]] = [[], [], []]
    for seed in range(400):
        ws = waits(SEED, Outcome("http_5xx"), seed)
        assert len(ws) == 3
        for i, w in enumerate(ws):
            assert 0.0 <= w <= caps[i]
            seen[i].append(w)
    for i, cap in enumerate(caps):  # full jitter spreads over the whole range, not a point
        assert min(seen[i]) < 0.1 * cap and max(seen[i]) > 0.9 * cap
        assert sum(seen[i]) / len(seen[i]) == pytest.approx(cap / 2, rel=0.15)


def test_jitter_is_seeded() -> None:
    assert waits(SEED, Outcome("connect"), 5) == waits(SEED, Outcome("connect"), 5)
    assert waits(SEED, Outcome("connect"), 5) != waits(SEED, Outcome("connect"), 6)
    a, b = retry.rng_for(1, 0, 7), retry.rng_for(1, 0, 7)
    assert a.random() == b.random()
    assert retry.rng_for(1, 0, 7).random() != retry.rng_for(1, 1, 7).random()


def test_retry_after_is_a_floor() -> None:
    for seed in range(50):
        ws = waits(SEED, Outcome("http_429", retry_after_s=2.5), seed)
        assert len(ws) == 3 and all(w >= 2.5 for w in ws)
        assert ws[2] <= 4.0  # the third cap is 4 s: max(2.5, U(0, 4))


def test_retry_after_too_long_gives_up() -> None:
    assert waits(SEED, Outcome("http_429", retry_after_s=61)) == []


def test_equal_and_no_jitter_and_caps() -> None:
    equal = retry.RetryPolicy(jitter="equal", max_retries=5, max_backoff_s=3)
    for seed in range(50):
        for i, w in enumerate(waits(equal, Outcome("connect"), seed)):
            cap = min(3.0, 2.0**i)
            assert cap / 2 <= w <= cap
    plain = retry.RetryPolicy(jitter="none", base_s=0.5, multiplier=3)
    assert waits(plain, Outcome("connect")) == [0.5, 1.5, 4.5]


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert retry.parse_retry_after("3", now) == 3.0
    assert retry.parse_retry_after(" 0.5 ", now) == 0.5
    assert retry.parse_retry_after("-4", now) == 0.0
    date = format_datetime(datetime.fromtimestamp(now + 10, UTC), usegmt=True)
    assert retry.parse_retry_after(date, now) == pytest.approx(10.0)
    for bad in (None, "", "soon", "nan"):
        assert retry.parse_retry_after(bad, now) is None


def test_resolve_names_and_file(tmp_path: Path) -> None:
    assert retry.resolve("none") is retry.NONE
    assert retry.resolve("seed") is retry.SEED
    p = tmp_path / "p.toml"
    p.write_text('max_retries = 5\nbase_s = 0.25\njitter = "equal"\nretry_on = ["http_429"]\n')
    policy = retry.resolve(str(p))
    assert (policy.max_retries, policy.base_s, policy.jitter) == (5, 0.25, "equal")
    assert policy.retry_on == ("http_429",) and policy.name == str(p)
    assert len(waits(policy, Outcome("http_429"))) == 5
    assert waits(policy, Outcome("http_5xx")) == []


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("max_retries = 'three'\n", "max_retries"),
        ("max_retries = 99\n", "0..20"),
        ("base_s = -1\n", "base_s"),
        ("multiplier = 0.5\n", "multiplier"),
        ("jitter = 'some'\n", "jitter"),
        ("retry_after = 1\n", "true or false"),
        ("retry_on = ['http_200']\n", "http_200"),
        ("retry_on = 'http_429'\n", "list of error types"),
        ("backoff = 1\n", "unknown key 'backoff'"),
        ("max_retries = \n", "not TOML"),
    ],
)
def test_bad_policy_files(tmp_path: Path, text: str, needle: str) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(UsageError) as err:
        retry.resolve(str(p))
    assert needle in err.value.message and str(p) in err.value.message
    assert err.value.exit_code == 2


def test_unknown_policy_name(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as err:
        retry.resolve("sometimes")
    assert "not 'none', 'seed' or a readable TOML file" in err.value.message
