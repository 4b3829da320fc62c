"""Scenario shapes are pure functions of elapsed time."""

from __future__ import annotations

import pytest

from loadtests.shapes import rate_segments, stage_at
from relaybench.run.config import SCENARIOS, ShapeParams


def users(p: ShapeParams, t: float) -> int:
    stage = stage_at(p, t)
    assert stage is not None
    return stage.users


def test_every_scenario_ends_at_its_duration_and_not_before() -> None:
    for name in SCENARIOS:
        p = ShapeParams(name, users=20, duration_s=30, rate=4.0)
        assert stage_at(p, 0) is not None
        assert stage_at(p, 29.99) is not None
        assert stage_at(p, 30) is None
        assert stage_at(p, -1) is None


def test_steady_is_constant() -> None:
    p = ShapeParams("steady", users=7, duration_s=10)
    assert {users(p, t / 10) for t in range(100)} == {7}


def test_step_climbs_in_equal_steps_and_records_the_index() -> None:
    p = ShapeParams("step", users=50, duration_s=50, steps=5)
    seen = [(stage_at(p, t).users, stage_at(p, t).step) for t in (0, 9.9, 10, 25, 49.9)]
    assert seen == [(10, 0), (10, 0), (20, 1), (30, 2), (50, 4)]


def test_step_by_rate_steps_the_rate_and_keeps_the_user_cap() -> None:
    p = ShapeParams("step", users=30, duration_s=40, rate=8.0, steps=4)
    assert p.open_loop
    assert [stage_at(p, t).rate for t in (0, 10, 20, 39)] == [2.0, 4.0, 6.0, 8.0]
    assert {stage_at(p, t).users for t in (0, 10, 20, 39)} == {30}
    assert rate_segments(p) == [(0, 10, 2.0), (10, 20, 4.0), (20, 30, 6.0), (30, 40, 8.0)]


def test_peak_is_baseline_ramp_hold_ramp_down_baseline() -> None:
    p = ShapeParams("peak", users=50, duration_s=100)
    assert p.baseline == 5
    assert users(p, 0) == users(p, 24.9) == 5  # baseline
    assert 5 < users(p, 32.5) < 50  # ramping up
    assert users(p, 40) == users(p, 74.9) == 50  # the evening peak: 10x the baseline
    assert 5 < users(p, 82.5) < 50  # ramping down
    assert users(p, 95) == 5
    ramp = [users(p, 25 + i * 0.5) for i in range(30)]
    assert ramp == sorted(ramp)  # monotonic on the way up


def test_spike_jumps_for_a_fifth_of_the_run() -> None:
    p = ShapeParams("spike", users=40, duration_s=50)
    assert users(p, 19.9) == 4
    assert users(p, 20) == users(p, 29.9) == 40
    assert users(p, 30) == 4


def test_soak_ramps_briefly_then_holds() -> None:
    p = ShapeParams("soak", users=100, duration_s=1000)
    assert 1 <= users(p, 10) < 100
    assert users(p, 50) == users(p, 999) == 100


def test_open_loop_carries_rate_and_cap() -> None:
    p = ShapeParams("poisson", users=64, duration_s=10, rate=12.5)
    stage = stage_at(p, 3)
    assert (stage.users, stage.rate, stage.step) == (64, 12.5, None)
    assert rate_segments(p) == [(0.0, 10, 12.5)]
    assert rate_segments(ShapeParams("steady", users=1, duration_s=1)) == []


def test_unknown_scenario_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        stage_at(ShapeParams("weekend", users=1, duration_s=1), 0)
