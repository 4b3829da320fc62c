"""``make bench-mock``'s verdicts on the issue's targets (pure: no benchmark is run here)."""

from __future__ import annotations

from mock_upstream.bench import _targets


def _row(**kw: float) -> dict[str, float]:
    row = {"workers": 1, "offered": 20_000, "chunks_per_s": 20_000, "us_per_chunk": 20.0}
    return {**row, "late_p99": 1.5, "mock_cpu": 50.0, **kw}


def test_one_worker_rows_judge_cost_and_lateness_at_20k() -> None:
    assert _targets(_row(), None) == (
        "<= 25 us/chunk (40k/s per core) met; p99 <= 2 ms at 20k/s met"
    )
    verdict = _targets(_row(us_per_chunk=30.0, late_p99=2.5), None)
    assert verdict == "<= 25 us/chunk (40k/s per core) missed; p99 <= 2 ms at 20k/s missed"
    assert "p99" not in _targets(_row(offered=100_000), None)  # only judged at 20k/s


def test_the_workers_ratio_is_judged_only_when_one_worker_fell_behind() -> None:
    one = _row(offered=100_000, chunks_per_s=40_000)
    assert _targets(_row(workers=2, offered=100_000, chunks_per_s=72_000), one).endswith(
        "1.80x met"
    )
    assert _targets(_row(workers=2, offered=100_000, chunks_per_s=60_000), one).endswith(
        "1.50x missed"
    )
    kept_up = _row(offered=100_000, chunks_per_s=95_000)
    verdict = _targets(_row(workers=2, offered=100_000, chunks_per_s=99_000), kept_up)
    assert verdict.endswith("n/a: one worker kept up with this load")
