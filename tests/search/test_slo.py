"""SLO checks with their intervals, and the thresholds-style SLO file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from relaybench.errors import UsageError
from relaybench.search.slo import FAIL, INCONCLUSIVE, PASS, SLO, judge, outcome_of, slo_from_toml


def requests(ttft: np.ndarray, errors: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ok = np.r_[np.ones(ttft.size, bool), np.zeros(errors, bool)]
    ttft = np.r_[ttft, np.full(errors, np.nan)]
    return ok, ttft, ttft + 4000


def test_interval_wholly_under_passes_wholly_over_fails_across_is_inconclusive() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(500, 50, 400)
    slo = SLO(ttft_p95_ms=1000)
    (check,) = judge(slo, *requests(base))
    assert check.outcome == PASS and check.high <= 1000
    (check,) = judge(slo, *requests(base + 1000))
    assert check.outcome == FAIL and check.low > 1000
    p95 = float(np.percentile(base, 95))
    (check,) = judge(SLO(ttft_p95_ms=p95), *requests(base))
    assert check.outcome == INCONCLUSIVE
    assert check.low < p95 < check.high


def test_error_rate_uses_a_wilson_interval_and_zero_errors_passes() -> None:
    slo = SLO(error_rate=0.05)
    (check,) = judge(slo, *requests(np.full(50, 100.0)))
    assert check.outcome == PASS and check.value == 0
    (check,) = judge(slo, *requests(np.full(60, 100.0), errors=40))
    assert check.outcome == FAIL
    (check,) = judge(slo, *requests(np.full(95, 100.0), errors=5))
    assert check.outcome == INCONCLUSIVE and check.decided


def test_goodput_counts_requests_within_the_latency_limits() -> None:
    slo = SLO(ttft_p95_ms=1000, goodput=0.5)
    ttft = np.r_[np.full(30, 100.0), np.full(70, 5000.0)]
    checks = judge(slo, *requests(ttft))
    good = next(c for c in checks if c.metric == "goodput")
    assert good.value == pytest.approx(0.3) and good.outcome == FAIL
    assert outcome_of(checks) == FAIL


def test_no_successful_request_fails_the_latency_slo() -> None:
    checks = judge(SLO(ttft_p95_ms=1000, error_rate=0.01), *requests(np.array([]), errors=10))
    assert [c.outcome for c in checks] == [FAIL, FAIL]
    assert checks[0].value is None


def test_goodput_without_a_latency_limit_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="goodput SLO needs"):
        SLO(goodput=0.9)


def test_slo_from_a_thresholds_file(tmp_path: Path) -> None:
    path = tmp_path / "slo.toml"
    path.write_text(
        '[relay]\n"ttft_ms.p95" = "<= 800"\n"error_rate" = "<= 0.02"\n"e2e_ms.p95" = "<= 9000"\n'
        '[derived]\nslo_ttft_ms = 800\ngoodput_pct = ">= 95"\n'
    )
    assert slo_from_toml(path, "relay") == SLO(800, 0.02, 9000, 0.95)
    with pytest.raises(UsageError, match="no SLO for target 'direct'"):
        slo_from_toml(_only(tmp_path, '[relay]\n"ttft_ms.p95" = "<= 800"\n'), "direct")
    with pytest.raises(UsageError, match="absolute limits"):
        slo_from_toml(_only(tmp_path, '[relay]\n"ttft_ms.p95" = "<= +10%"\n'), "relay")
    with pytest.raises(UsageError, match="a search judges"):
        slo_from_toml(_only(tmp_path, '[relay]\n"itl_ms.p50" = "<= 30"\n'), "relay")


def _only(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "other.toml"
    path.write_text(text)
    return path
