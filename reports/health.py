"""Is this run's measurement trustworthy?  The ``health`` block of summary.json.

A run is ``degraded`` when any check below fails; each reason is one sentence with the numbers.
``checked`` lists the checks the folder's data allowed (no ``mock_stats/``: no mock checks).
``leaks`` holds one sentence per server series the leak watch flagged (``reports.leaks``: RSS or
open fds growing steadily while the scenario held its load). A leak is a finding about the
target, not a flaw of the measurement, so it does not make the run degraded.

- Load-generator CPU: more than ``cpu_busy_share`` of the ``loadgen/*.jsonl`` samples above
  ``cpu_busy_pct`` (100 = one core): the harness, not the target, may have set the pace.
- Open-loop schedule lag: p99 of ``start_ns - intended_ns`` above ``schedule_lag_p99_ms``: the
  generator sent late, so the asked arrival process was not delivered.
- Mock emission lateness: ``mock_stats/<target>.json`` ``lateness_ms.p99`` above
  ``mock_lateness_p99_ms``: the mock itself was the bottleneck.
- Achieved rate: for open-loop targets, the requests sent per second over the target's window
  fell short of the asked rate by more than ``rate_shortfall`` (see ``asked_rate``) and by more
  than two standard deviations of a Poisson count (``2 * sqrt(expected)``), so a short run's
  random schedule is not mistaken for a failing generator. When every user was busy at once
  (``reports.inflight``), this and the schedule lag name the in-flight cap (``--users``), not
  the load generator.
- Records versus mock counts (``mock_stats/<target>.json``: requests, completed, cancelled,
  rejected, bad_requests, faulted). A record "reached the server" unless its error is ``connect``.

  * every target: ``ok`` records must not exceed the mock's ``completed`` — each complete answer
    needs one complete generation upstream (a relay cannot invent one);
  * ``direct`` targets (kind ``mock``) only: the mock's ``completed + cancelled + rejected +
    bad_requests + faulted`` (every request ends in exactly one of these) must
    match the records that reached it, within ``slack`` = the most requests that can be in flight
    when the target stops (the sum over workers of their largest ``users``). A relay may
    reject, retry or answer without upstream calls, so this equality is not checked through it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from reports import server as server_view
from reports.folder import RunFolder, target_window_ns
from reports.inflight import in_flight
from reports.samples import schedule_lag_ms
from reports.stats import quantile

CONSTANT_RATE_SCENARIOS = ("constant", "poisson")


@dataclass(frozen=True)
class HealthLimits:
    cpu_busy_pct: float = 90.0
    cpu_busy_share: float = 0.10
    schedule_lag_p99_ms: float = 50.0
    mock_lateness_p99_ms: float = 20.0
    rate_shortfall: float = 0.05


def check_health(folder: RunFolder, limits: HealthLimits | None = None) -> dict:
    limits = limits or HealthLimits()
    reasons: list[str] = []
    cpu_max = _cpu(folder.loadgen, limits, reasons)
    checked = [f"load-generator CPU ({len(folder.loadgen)} samples)"] if len(folder.loadgen) else []
    frame = folder.frame
    open_loop, with_mock = [], []
    for name in folder.target_names():
        rows = frame[frame["target"].to_numpy() == name]
        if rows["intended_ns"].notna().any():
            open_loop.append(name)
            _schedule_lag(name, rows, limits, reasons)
            _achieved_rate(folder, name, rows, limits, reasons)
        stats = folder.mock_stats.get(name)
        if stats:
            with_mock.append(name)
            _mock_lateness(name, stats, limits, reasons)
            _mock_counts(folder, name, rows, stats, reasons)
    if open_loop:
        checked.append(f"schedule lag and achieved rate ({', '.join(open_loop)})")
    if with_mock:
        checked.append(f"mock lateness and record counts ({', '.join(with_mock)})")
    leaks, leak_checked = server_view.leak_reasons(folder)
    if leak_checked:
        flagged = f"{len(leaks)} flagged" if leaks else "no steady growth"
        checked.append(f"{leak_checked[0]}: {flagged}")
    return {
        "degraded": bool(reasons),
        "reasons": reasons,
        "loadgen_cpu_max_pct": cpu_max,
        "checked": checked,
        "leaks": leaks,
    }


def _cpu(loadgen: pd.DataFrame, limits: HealthLimits, reasons: list[str]) -> float:
    if loadgen.empty:
        return 0.0
    cpu = loadgen["cpu_pct"].to_numpy(dtype=np.float64)
    busy = float(np.mean(cpu > limits.cpu_busy_pct))
    if busy > limits.cpu_busy_share:
        reasons.append(
            f"The load generator's CPU was above {limits.cpu_busy_pct:.0f}% in {busy:.0%} of "
            f"{cpu.size} samples (max {cpu.max():.0f}%): the harness may have limited the load "
            f"and inflated the latencies it measured."
        )
    return round(float(cpu.max()), 1)


def _schedule_lag(name: str, rows: pd.DataFrame, limits: HealthLimits, reasons: list[str]) -> None:
    lag = schedule_lag_ms(rows[rows["intended_ns"].notna().to_numpy()])
    p99 = quantile(lag, 99)
    if p99 is not None and p99 > limits.schedule_lag_p99_ms:
        cap = in_flight(rows)
        why = (
            cap.sentence(None)
            if cap.reached
            else "requests left later than scheduled, so the asked arrival rate was not "
            "delivered on time"
        )
        reasons.append(
            f"{name}: open-loop schedule lag p99 was {p99:.1f} ms (bound "
            f"{limits.schedule_lag_p99_ms:.0f} ms): {why}."
        )


def asked_rate(folder: RunFolder, rows: pd.DataFrame) -> float | None:
    """The asked arrival rate (req/s) over the target's run.

    A ``constant``/``poisson`` run asks ``scenario_params.rate`` throughout; any other open-loop
    shape (a rate ``step`` run) is averaged from the records' ``rate`` column per second sent.
    """
    rate = (folder.meta.get("scenario_params") or {}).get("rate")
    constant = folder.meta.get("scenario") in CONSTANT_RATE_SCENARIOS
    if constant and isinstance(rate, int | float) and not isinstance(rate, bool) and rate > 0:
        return float(rate)
    asked = rows["rate"].to_numpy(dtype=np.float64)
    keep = ~np.isnan(asked)
    if not keep.any():
        return None
    seconds = (rows["start_ns"].to_numpy()[keep] // 1_000_000_000).astype(np.int64)
    per_second = pd.Series(asked[keep]).groupby(seconds).mean()
    return float(per_second.mean())


def _achieved_rate(
    folder: RunFolder, name: str, rows: pd.DataFrame, limits: HealthLimits, reasons: list[str]
) -> None:
    asked = asked_rate(folder, rows)
    if not asked:
        return
    started, ended = target_window_ns(folder, name, rows)
    seconds = (ended - started) / 1e9
    achieved = len(rows) / seconds
    short = 1 - achieved / asked
    # a Poisson schedule's own count varies by sqrt(expected): only a deficit beyond two of
    # those standard deviations is the generator's fault, not the dice's
    expected = asked * seconds
    beyond_noise = expected - len(rows) > 2 * math.sqrt(expected)
    if short > limits.rate_shortfall and beyond_noise:
        cap = in_flight(rows)
        why = (
            cap.sentence(asked)
            if cap.reached
            else "the load generator did not deliver the scenario"
        )
        reasons.append(
            f"{name}: achieved {achieved:.1f} req/s against an asked {asked:.1f} req/s "
            f"({short:.0%} short, limit {limits.rate_shortfall:.0%}): {why}."
        )


def _mock_lateness(name: str, stats: dict, limits: HealthLimits, reasons: list[str]) -> None:
    lateness = stats.get("lateness_ms")
    p99 = lateness.get("p99") if isinstance(lateness, dict) else None
    if isinstance(p99, int | float) and p99 > limits.mock_lateness_p99_ms:
        reasons.append(
            f"{name}: the mock emitted chunks late (lateness p99 {p99:.1f} ms, bound "
            f"{limits.mock_lateness_p99_ms:.0f} ms): the mock, not the target, was the "
            f"bottleneck."
        )


def _count(stats: dict, key: str) -> int | None:
    value = stats.get(key)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _mock_counts(
    folder: RunFolder, name: str, rows: pd.DataFrame, stats: dict, reasons: list[str]
) -> None:
    ok = int(rows["ok"].sum())
    completed = _count(stats, "completed")
    if completed is not None and ok > completed:
        reasons.append(
            f"{name}: {ok} successful records but the mock completed only {completed} "
            f"answers: records and mock counts do not add up."
        )
    if folder.target_meta(name).get("kind") != "mock":
        return
    keys = ("completed", "cancelled", "rejected", "bad_requests", "faulted")
    parts = [_count(stats, key) for key in keys]
    if any(part is None for part in parts[:2]):
        return
    served = sum(part or 0 for part in parts)
    attempts = rows["attempts"].fillna(1).to_numpy()  # a retried record sent several requests
    reached = int(attempts[rows["error"].to_numpy() != "connect"].sum())
    slack = int(rows.groupby("worker")["users"].max().fillna(0).sum()) if len(rows) else 0
    if abs(served - reached) > slack:
        reasons.append(
            f"{name}: {reached} records reached the mock but it served {served} "
            f"(completed {parts[0]}, cancelled {parts[1]}, rejected {parts[2] or 0}, "
            f"bad requests {parts[3] or 0}, faulted {parts[4] or 0}; "
            f"in-flight allowance {slack}): records were lost or counted twice."
        )
