"""The SLOs a search holds a target to, and the verdict of one probe's measurements.

Each check carries a 95% interval, so a probe near the limit is not decided by noise:

- latency percentiles (TTFT p95, E2E p95, over successful requests): the bootstrap interval of
  the percentile (``reports.significance``: exact order-statistic bootstrap, seeded);
- error rate and goodput (proportions of all requests): the Wilson score interval
  (``scipy.stats.binomtest``).

A check *passes* when its whole interval is on the right side of the limit, *fails* when the
whole interval is on the wrong side, and is *inconclusive* when the interval straddles it. A
proportion whose bad count is zero passes outright: the interval of 0 of n only says how few
requests there were (at 50 requests, 0 errors gives an upper bound of 7%), and no probe length
that fits a search would ever close it. ``decided`` is the point estimate's side, used once an
inconclusive probe has been repeated and is still inconclusive.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from relaybench.errors import UsageError

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
CONFIDENCE = 0.95
_SUPPORTED = ("ttft_ms.p95", "e2e_ms.p95", "error_rate")


@dataclass(frozen=True)
class SLO:
    ttft_p95_ms: float | None = None
    error_rate: float | None = None
    e2e_p95_ms: float | None = None
    goodput: float | None = None  # share of all requests ok and within the latency limits

    def __post_init__(self) -> None:
        if self.goodput is not None and self.ttft_p95_ms is None and self.e2e_p95_ms is None:
            raise UsageError(
                "a goodput SLO needs a per-request latency limit: give --slo-ttft-p95-ms "
                "(and/or --slo-e2e-p95-ms); goodput counts requests within it"
            )

    @property
    def empty(self) -> bool:
        return all(v is None for v in asdict(self).values())

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)

    def describe(self) -> str:
        parts = []
        if self.ttft_p95_ms is not None:
            parts.append(f"TTFT p95 ≤ {self.ttft_p95_ms:g} ms")
        if self.e2e_p95_ms is not None:
            parts.append(f"E2E p95 ≤ {self.e2e_p95_ms:g} ms")
        if self.error_rate is not None:
            parts.append(f"error rate ≤ {self.error_rate:.2%}")
        if self.goodput is not None:
            parts.append(f"goodput ≥ {self.goodput:.0%}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Check:
    """One SLO on one probe: the measured value, its 95% interval and the outcome."""

    metric: str  # ttft_ms.p95, e2e_ms.p95, error_rate, goodput
    op: str  # "<=" or ">="
    limit: float
    value: float | None
    low: float | None
    high: float | None
    outcome: str  # pass, fail, inconclusive
    n: int  # values the statistic was computed from

    @property
    def decided(self) -> bool:
        """The point estimate's side of the limit (no value: not met)."""
        if self.value is None:
            return False
        return self.value <= self.limit if self.op == "<=" else self.value >= self.limit

    def as_dict(self) -> dict:
        return asdict(self)


def judge(
    slo: SLO, ok: np.ndarray, ttft_ms: np.ndarray, e2e_ms: np.ndarray, *, seed: int = 0
) -> list[Check]:
    """The SLO checks of one probe's requests (one entry per request in each array)."""
    ok = np.asarray(ok, dtype=bool)
    ttft_ms = np.asarray(ttft_ms, dtype=np.float64)
    e2e_ms = np.asarray(e2e_ms, dtype=np.float64)
    checks = []
    if slo.ttft_p95_ms is not None:
        checks.append(_percentile("ttft_ms.p95", ttft_ms[ok], 95, slo.ttft_p95_ms, seed))
    if slo.e2e_p95_ms is not None:
        checks.append(_percentile("e2e_ms.p95", e2e_ms[ok], 95, slo.e2e_p95_ms, seed))
    if slo.error_rate is not None:
        errors = int((~ok).sum())
        checks.append(_proportion("error_rate", errors, ok.size, "<=", slo.error_rate, errors))
    if slo.goodput is not None:
        good = ok.copy()
        if slo.ttft_p95_ms is not None:
            good &= np.nan_to_num(ttft_ms, nan=np.inf) <= slo.ttft_p95_ms
        if slo.e2e_p95_ms is not None:
            good &= np.nan_to_num(e2e_ms, nan=np.inf) <= slo.e2e_p95_ms
        n_good = int(good.sum())
        checks.append(_proportion("goodput", n_good, ok.size, ">=", slo.goodput, ok.size - n_good))
    return checks


def outcome_of(checks: list[Check]) -> str:
    """fail if any check fails, else inconclusive if any is, else pass."""
    outcomes = {c.outcome for c in checks}
    if FAIL in outcomes:
        return FAIL
    return INCONCLUSIVE if INCONCLUSIVE in outcomes else PASS


def _percentile(metric: str, values: np.ndarray, q: float, limit: float, seed: int) -> Check:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Check(metric, "<=", limit, None, None, None, FAIL, 0)
    from reports.significance import bootstrap_statistic  # the reports' own exact bootstrap

    estimate, replicates = bootstrap_statistic(values, q, 2000, np.random.default_rng(seed))
    low, high = (float(v) for v in np.percentile(replicates, [2.5, 97.5]))
    outcome = PASS if high <= limit else FAIL if low > limit else INCONCLUSIVE
    return Check(
        metric,
        "<=",
        limit,
        round(estimate, 3),
        round(low, 3),
        round(high, 3),
        outcome,
        int(values.size),
    )


def _proportion(metric: str, k: int, n: int, op: str, limit: float, bad: int) -> Check:
    if n == 0:
        return Check(metric, op, limit, None, None, None, FAIL, 0)
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    value, low, high = k / n, float(ci.low), float(ci.high)
    if bad == 0:
        outcome = PASS
    elif op == "<=":
        outcome = PASS if high <= limit else FAIL if low > limit else INCONCLUSIVE
    else:
        outcome = PASS if low >= limit else FAIL if high < limit else INCONCLUSIVE
    return Check(metric, op, limit, round(value, 5), round(low, 5), round(high, 5), outcome, n)


def slo_from_toml(path: Path, target: str) -> SLO:
    """The SLO of ``target`` from a thresholds-style TOML (``relaybench gate``'s format).

    ``[TARGET]`` may hold ``"ttft_ms.p95" = "<= X"``, ``"e2e_ms.p95" = "<= X"`` and
    ``"error_rate" = "<= X"``; ``[derived]`` ``goodput_pct = ">= P"`` (with its ``slo_ttft_ms``).
    Relative limits and other metrics are refused: a search needs absolute limits it can probe.
    """
    from reports.thresholds import load_thresholds

    thresholds = load_thresholds(path)
    values: dict[str, float] = {}
    for check in thresholds.checks:
        if check.target not in (target, "derived"):
            continue
        where = f"{path}: [{check.target}] {check.metric!r} = {check.text!r}"
        if check.relative:
            raise UsageError(
                f"{where}: a search needs absolute limits, not a change from a baseline"
            )
        if check.derived:
            if check.metric != "goodput_pct" or check.op != ">=":
                raise UsageError(
                    f"{where}: the only [derived] SLO a search uses is goodput_pct >= P"
                )
            values["goodput"] = check.value / 100
            continue
        if check.metric not in _SUPPORTED or check.op != "<=":
            raise UsageError(
                f"{where}: a search judges {', '.join(f'{m} <= X' for m in _SUPPORTED)} "
                "(and [derived] goodput_pct >= P)"
            )
        values[
            {"ttft_ms.p95": "ttft_p95_ms", "e2e_ms.p95": "e2e_p95_ms"}.get(
                check.metric, check.metric
            )
        ] = check.value
    if "goodput" in values and "ttft_p95_ms" not in values:
        values.setdefault("ttft_p95_ms", thresholds.derived.slo_ttft_ms)  # type: ignore[arg-type]
        if thresholds.derived.slo_e2e_ms is not None:
            values.setdefault("e2e_p95_ms", thresholds.derived.slo_e2e_ms)
    if not values:
        raise UsageError(f"{path}: no SLO for target {target!r} (expected a [{target}] table)")
    return SLO(**values)
