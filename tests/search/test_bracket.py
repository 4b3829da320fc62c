"""The search algorithm against fake probes with a known capacity."""

from __future__ import annotations

import pytest

from relaybench.search.bracket import (
    ALL_FAILED,
    BELOW_START,
    FOUND,
    HARNESS_BOUND,
    INTERRUPTED,
    NO_FAILURE,
    ProbeRequest,
    ProbeResult,
    SearchSettings,
    conclude,
    find_capacity,
)
from relaybench.search.slo import FAIL, INCONCLUSIVE, PASS, Check


def ttft_check(p95: float, limit: float = 1000.0, spread: float = 0.0) -> Check:
    low, high = p95 - spread, p95 + spread
    outcome = PASS if high <= limit else FAIL if low > limit else INCONCLUSIVE
    return Check("ttft_ms.p95", "<=", limit, p95, low, high, outcome, 100)


class Fake:
    """TTFT p95 = 500 ms below ``capacity``, 2000 ms above; optional twists per load."""

    def __init__(self, capacity: float, **twists) -> None:
        self.capacity = capacity
        self.twists = twists
        self.calls: list[ProbeRequest] = []

    def __call__(self, req: ProbeRequest) -> ProbeResult:
        self.calls.append(req)
        degraded = self.twists.get("degraded_at")
        if degraded is not None and req.load >= degraded:
            return ProbeResult(req.load, req.seconds, HARNESS_BOUND, reasons=["loadgen CPU 100%"])
        if self.twists.get("interrupt_at") is not None and req.index == self.twists["interrupt_at"]:
            raise KeyboardInterrupt
        near = self.twists.get("inconclusive_near")
        if near and abs(req.load - near) < 1e-9 and req.role != "repeat":
            check = ttft_check(990.0, spread=50.0)  # straddles 1000 ms; point estimate passes
        else:
            check = ttft_check(500.0 if req.load <= self.capacity else 2000.0)
        return ProbeResult(req.load, req.seconds, check.outcome, checks=[check])


@pytest.mark.parametrize("capacity", [3.3, 7.0, 12.5, 40.0, 100.0])
def test_lands_within_precision_of_a_known_capacity(capacity: float) -> None:
    settings = SearchSettings(start=1.0, precision=0.05, max_probes=20, probe_s=5)
    fake = Fake(capacity)
    out = find_capacity(fake, settings)
    assert out.status == FOUND
    lo, hi = out.bracket
    assert out.capacity == lo
    assert lo <= capacity < hi
    assert (hi - lo) / lo <= 0.05 and out.converged
    assert out.confirmed
    confirm = fake.calls[-1]
    assert confirm.role == "confirm" and confirm.load == lo and confirm.seconds == 10


def test_integer_axis_stops_at_one_user_resolution() -> None:
    settings = SearchSettings(start=1, precision=0.01, max_probes=30, integer=True, unit="users")
    fake = Fake(13)
    out = find_capacity(fake, settings)
    assert out.bracket == (13, 14)
    assert out.stopped == "resolution"
    assert all(float(c.load).is_integer() for c in fake.calls)


def test_degraded_probe_stops_with_harness_bound_and_is_not_counted() -> None:
    settings = SearchSettings(start=1.0, precision=0.05, max_probes=20)
    fake = Fake(100.0, degraded_at=8.0)
    out = find_capacity(fake, settings)
    assert out.status == HARNESS_BOUND
    assert out.capacity is None
    assert [c.load for c in fake.calls] == [1.0, 2.0, 4.0, 8.0]  # nothing probed after it
    assert out.probes[-1].counted is None
    assert "harness-bound at 8 req/s" in out.message and "loadgen CPU 100%" in out.message
    assert "at least 4" in out.message
    assert "--processes" in out.hint


def test_inconclusive_probe_is_repeated_once_longer() -> None:
    settings = SearchSettings(start=1.0, precision=0.05, max_probes=20, probe_s=5)
    fake = Fake(100.0, inconclusive_near=4.0)
    out = find_capacity(fake, settings)
    loads = [(c.load, c.role, c.seconds) for c in fake.calls]
    assert loads[2:4] == [(4.0, "bracket", 5), (4.0, "repeat", 10)]
    first, repeat = out.probes[2], out.probes[3]
    assert first.verdict == INCONCLUSIVE and first.counted is None
    assert repeat.counted == PASS
    assert out.status == FOUND


def test_still_inconclusive_after_the_repeat_is_counted_by_point_estimate() -> None:
    def probe(req: ProbeRequest) -> ProbeResult:
        p95 = 990.0 if req.load >= 2 else 500.0  # estimate under the SLO, interval across it
        check = ttft_check(p95, spread=50.0 if req.load >= 2 else 0.0)
        if req.load >= 4:
            check = ttft_check(3000.0)
        return ProbeResult(req.load, req.seconds, check.outcome, checks=[check])

    out = find_capacity(probe, SearchSettings(start=1.0, precision=0.05, max_probes=20))
    twos = [p for p in out.probes if p.load == 2.0 and p.role != "confirm"]
    assert [p.verdict for p in twos] == [INCONCLUSIVE, INCONCLUSIVE]
    assert twos[-1].counted == PASS
    assert out.bracket[0] >= 2.0


def test_max_probes_is_honoured() -> None:
    fake = Fake(37.0)
    out = find_capacity(fake, SearchSettings(start=1.0, precision=0.001, max_probes=8))
    assert sum(c.role != "confirm" for c in fake.calls) == 8
    assert fake.calls[-1].role == "confirm"  # the confirmation comes on top
    assert out.stopped == "max-probes"
    assert out.status == FOUND and not out.converged
    assert out.bracket[0] <= 37.0 < out.bracket[1]
    assert "wider than --precision" in out.message


def test_max_probes_while_still_doubling_is_a_lower_bound() -> None:
    out = find_capacity(Fake(1000.0), SearchSettings(start=1.0, max_probes=3))
    assert out.status == NO_FAILURE
    assert out.capacity is None and out.bracket == (4.0, None)
    assert "at least 4" in out.message


def test_failing_start_is_below_start_not_an_error() -> None:
    fake = Fake(0.5)
    out = find_capacity(fake, SearchSettings(start=1.0))
    assert out.status == BELOW_START
    assert out.capacity is None
    assert len(fake.calls) == 1
    assert "below --start" in out.message and "lower --start" in out.message


def test_failed_confirmation_falls_back_to_the_next_lower_pass() -> None:
    def probe(req: ProbeRequest) -> ProbeResult:
        # 10 passes short probes but fails the long confirmation: its tail shows late
        limit_load = 9.0 if req.role == "confirm" else 10.0
        check = ttft_check(500.0 if req.load <= limit_load else 2000.0)
        return ProbeResult(req.load, req.seconds, check.outcome, checks=[check])

    out = find_capacity(probe, SearchSettings(start=5.0, precision=0.5, max_probes=10))
    assert out.probes[-1].role == "confirm" and out.probes[-1].counted == FAIL
    assert out.bracket == (5.0, 10.0)
    assert out.capacity == 5.0 and not out.confirmed
    assert "not confirmed" in out.message


def test_ctrl_c_keeps_the_probes_done_so_far() -> None:
    out = find_capacity(Fake(100.0, interrupt_at=3), SearchSettings(start=1.0))
    assert out.status == INTERRUPTED
    assert [p.load for p in out.probes] == [1.0, 2.0, 4.0]
    assert "interrupted after 3 probe(s)" in out.message and "at least 4" in out.message


def test_conclusion_is_a_function_of_the_probes_alone() -> None:
    settings = SearchSettings(start=1.0, precision=0.05, max_probes=20)
    out = find_capacity(Fake(12.5), settings)
    again = conclude(out.probes, settings, out.stopped)
    assert (again.capacity, again.bracket, again.message) == (
        out.capacity,
        out.bracket,
        out.message,
    )


def test_all_failed_stops_at_the_start_but_is_a_fail_above_a_pass() -> None:
    def probe(req: ProbeRequest) -> ProbeResult:
        if req.load > 4:
            return ProbeResult(req.load, req.seconds, ALL_FAILED, reasons=["all 429"])
        check = ttft_check(500.0)
        return ProbeResult(req.load, req.seconds, check.outcome, checks=[check])

    out = find_capacity(probe, SearchSettings(start=1.0, precision=0.3, max_probes=20))
    assert out.status == FOUND and out.bracket[0] == 4.0 and out.bracket[1] <= 5.3

    def dead(req: ProbeRequest) -> ProbeResult:
        return ProbeResult(req.load, req.seconds, ALL_FAILED, reasons=["connect 50"])

    out = find_capacity(dead, SearchSettings(start=1.0))
    assert out.status == ALL_FAILED and len(out.probes) == 1
    assert "connect 50" in out.message and "check the target" in out.hint
