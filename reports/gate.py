"""The CI performance gate: evaluate a thresholds file against a run (and a baseline run).

Three kinds of check, one ``Result`` each:

absolute   ``[relay] "ttft_ms.p95" = "<= 800"`` — the run's summary.json value against the limit.
relative   ``[relay] "ttft_ms.p50" = "<= +10%"`` — the change versus the same metric of --baseline,
           judged on the raw records of both runs (see ``_relative``): FAIL only when the estimated
           change is beyond the tolerance AND the confidence interval of the change lies wholly on
           the bad side of min(0, tolerance) for ``<=`` (max(0, tolerance) for ``>=``). The
           tolerance says how big a change matters; the interval says whether it is real.
           Pooled per-chunk metrics (itl, chunk lag) resample whole requests (cluster bootstrap).
derived    ``[derived] "relay_added_ttft_ms.p95" = "<= 50"`` — computed across the targets of the
           same run, so machine speed cancels out. Absolute limits only.

Before the checks, each run's ``health`` block: a degraded run (saturated load generator,
counts that do not add up) is an inconclusive measurement and fails the gate unless allowed.

Data problems (missing target, empty run, absent lag stamps) raise ``UsageError`` (exit 2);
a limit that is not met is a failed ``Result`` (exit 1).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from relaybench.errors import UsageError
from relaybench.records import PERCENTILES
from reports.records import Records, load_records
from reports.samples import Sample, counted, select
from reports.shape import differences
from reports.significance import Interval, mann_whitney, percentile_diff_ci
from reports.thresholds import DISTRIBUTIONS, Check, Thresholds, server_metric

_LAG_FAMILIES = ("first_token_lag_ms", "chunk_lag_ms")


@dataclass
class Run:
    """A run folder: its summary.json, and its raw records loaded on first use."""

    path: Path
    summary: dict
    meta: dict = field(default_factory=dict)  # run.json ({} when absent or unreadable)
    _records: Records | None = field(default=None, repr=False)

    @property
    def targets(self) -> dict[str, dict]:
        return self.summary["targets"]

    def entry(self, target: str, role: str = "run") -> dict:
        if target not in self.targets:
            known = ", ".join(self.targets) or "none"
            raise UsageError(
                f"target {target!r} is not in the {role} {self.path} (its targets: {known})"
            )
        return self.targets[target]

    def records(self, target: str) -> pd.DataFrame:
        """The target's measured records (those the run's stop cut off are left out)."""
        frame = self._load().scalars
        return counted(frame[frame["target"] == target])

    def sample(self, target: str, metric: str) -> Sample:
        """The values behind ``metric`` for ``target``, selected as summary.json's were."""
        return select(self._load(), self.records(target), metric)

    def _load(self) -> Records:
        if self._records is None:
            self._records = load_records(self.path)
        return self._records


def open_run(path: Path | str, role: str = "run") -> Run:
    """Read a run folder's summary.json (rebuilt from its records when absent)."""
    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"{role} {path} is not a directory")
    summary_path = path / "summary.json"
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"{role} {summary_path} is unreadable: {exc}") from exc
    else:
        summary = _build_summary(path, role)
    if not isinstance(summary, dict) or not isinstance(summary.get("targets"), dict):
        raise UsageError(f"{role} {summary_path} has no 'targets' table: not a relaybench summary")
    if not isinstance(summary.get("health"), dict):
        raise UsageError(f"{role} {summary_path} has no 'health' block: not a relaybench summary")
    if sum(int(t.get("requests") or 0) for t in summary["targets"].values()) == 0:
        raise UsageError(f"{role} {path} is an empty run: no request was recorded")
    return Run(path=path, summary=summary, meta=_read_meta(path / "run.json"))


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _build_summary(path: Path, role: str) -> dict:
    if not (path / "records").is_dir():
        raise UsageError(f"{role} {path} has neither summary.json nor records/: not a run folder")
    from reports.summary import build_summary  # the reports engineer's one summary builder

    return build_summary(path)


@dataclass(frozen=True)
class Result:
    """The outcome of one check (or of a run's health)."""

    target: str
    metric: str
    passed: bool
    measured: float | None
    limit: str
    detail: str = ""
    kind: str = "absolute"  # absolute | relative | derived | health

    @property
    def status(self) -> str:
        return "PASS" if self.passed else "FAIL"


@dataclass
class GateReport:
    results: list[Result]
    run: Path
    thresholds: Path
    baseline: Path | None
    confidence: float

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def inconclusive(self) -> bool:
        return any(r.kind == "health" and not r.passed for r in self.results)

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.results if not r.passed]

    @property
    def verdict(self) -> str:
        if self.passed:
            return "PASS"
        return "INCONCLUSIVE" if self.inconclusive else "FAIL"


@dataclass(frozen=True)
class GateOptions:
    allow_degraded: bool = False
    allow_shape_mismatch: bool = False
    confidence: float = 0.95
    n_boot: int = 2000
    seed: int = 0


def evaluate(
    thresholds: Thresholds,
    run: Run,
    baseline: Run | None = None,
    options: GateOptions | None = None,
) -> GateReport:
    """Every check of ``thresholds`` against ``run``; raises UsageError for unusable input."""
    options = options or GateOptions()
    _validate(thresholds, run, baseline)
    if baseline is not None and thresholds.needs_baseline and not options.allow_shape_mismatch:
        _same_shape(run, baseline)
    results = [_health(run, "run", options.allow_degraded)]
    if baseline is not None and thresholds.needs_baseline:
        results.append(_health(baseline, "baseline", options.allow_degraded))
    for check in thresholds.checks:
        if check.derived:
            results.append(_derived(check, run, thresholds))
        elif check.relative:
            assert baseline is not None  # _validate guarantees it
            results.append(_relative(check, run, baseline, options))
        else:
            results.append(_absolute(check, run))
    return GateReport(
        results=results,
        run=run.path,
        thresholds=thresholds.path,
        baseline=baseline.path if baseline is not None else None,
        confidence=options.confidence,
    )


def _validate(thresholds: Thresholds, run: Run, baseline: Run | None) -> None:
    relative = [c for c in thresholds.checks if c.relative]
    if relative and baseline is None:
        shown = ", ".join(f"[{c.target}] {c.metric} {c.text!r}" for c in relative)
        raise UsageError(f"relative limits need --baseline DIR: {shown}")
    for target in thresholds.targets:
        run.entry(target, "run")
    if baseline is not None:
        for target in dict.fromkeys(c.target for c in relative):
            baseline.entry(target, "baseline")


def _same_shape(run: Run, baseline: Run) -> None:
    """Refuse a baseline measured under another scenario or load: its change is not the code's."""
    material = [d for d in differences(baseline.meta, run.meta) if d.material]
    if material:
        raise UsageError(
            f"baseline {baseline.path} and run {run.path} are not the same shape: "
            + "; ".join(d.text() for d in material)
            + " (baseline vs run); record the baseline with the run's scenario and load, "
            "or pass --allow-shape-mismatch to gate anyway"
        )


def _health(run: Run, role: str, allow: bool) -> Result:
    health = run.summary["health"]
    degraded = bool(health.get("degraded"))
    reasons = "; ".join(map(str, health.get("reasons") or [])) or "no reason given"
    cpu = health.get("loadgen_cpu_max_pct")
    cpu_note = f" (load generator CPU max {cpu:.0f}%)" if isinstance(cpu, int | float) else ""
    if not degraded:
        detail = f"{role} measurement healthy{cpu_note}"
    elif allow:
        detail = f"degraded, allowed by --allow-degraded: {reasons}{cpu_note}"
    else:
        detail = (
            f"inconclusive: the {role} is degraded ({reasons}){cpu_note}; "
            "rerun with less load or pass --allow-degraded"
        )
    return Result(
        target=role,
        metric="health.degraded",
        passed=allow or not degraded,
        measured=float(degraded),
        limit="not degraded",
        detail=detail,
        kind="health",
    )


# -- values ------------------------------------------------------------------------------------


def metric_value(entry: dict, metric: str, where: str) -> float | None:
    """A target's metric from its summary entry; None when measured but empty (count 0)."""
    if metric.startswith("errors."):
        return float((entry.get("errors") or {}).get(metric.split(".", 1)[1], 0))
    if (server := server_metric(metric)) is not None:
        return _server_value(entry, *server, where)
    if "." not in metric:
        value = entry.get(metric)
        return None if value is None else float(value)
    family, stat = metric.split(".", 1)
    block = entry.get(family)
    if block is None:
        why = (
            ": its upstream sends no x_mock_emitted_ns stamps"
            if family in _LAG_FAMILIES
            else " in the summary"
        )
        raise UsageError(f"{where} has no {family} statistics{why}")
    value = block.get(stat)
    return None if value is None else float(value)


def _server_value(entry: dict, server: str, name: str, where: str) -> float | None:
    """``server.SERVER.FIELD``: the target's summary ``server`` block (``relaybench.scrape``)."""
    block = entry.get("server") or {}
    if server not in block:
        known = ", ".join(block) or "none: nothing was scraped during it"
        raise UsageError(f"{where} has no samples of server {server!r} (servers: {known})")
    value = block[server].get(name)
    return None if value is None else float(value)


def _met(op: str, value: float, limit: float) -> bool:
    return value <= limit if op == "<=" else value >= limit


# -- the three kinds ---------------------------------------------------------------------------


def _absolute(check: Check, run: Run) -> Result:
    entry = run.entry(check.target)
    value = metric_value(entry, check.metric, f"target {check.target!r} of {run.path}")
    if value is None:
        return Result(check.target, check.metric, False, None, check.text, "no measurement")
    return Result(check.target, check.metric, _met(check.op, value, check.value), value, check.text)


def _relative(check: Check, run: Run, baseline: Run, options: GateOptions) -> Result:
    family, _, stat = check.metric.partition(".")
    if family in DISTRIBUTIONS and (stat in PERCENTILES or stat == "mean"):
        return _relative_distribution(check, run, baseline, options, family, stat)
    where = f"target {check.target!r} of"
    current = metric_value(run.entry(check.target), check.metric, f"{where} {run.path}")
    base = metric_value(
        baseline.entry(check.target, "baseline"), check.metric, f"{where} {baseline.path}"
    )
    if current is None or base is None:
        missing = "run" if current is None else "baseline"
        return Result(
            check.target,
            check.metric,
            False,
            current,
            check.text,
            f"no measurement in the {missing}",
            "relative",
        )
    change = _change(base, current)
    violated = not _met(check.op, change, check.value)
    if check.metric == "output_tokens_per_s":
        base_rates = baseline.sample(check.target, "tokens_per_s").values
        rates = run.sample(check.target, "tokens_per_s").values
        if base_rates.size == 0 or rates.size == 0:
            missing = "run" if rates.size == 0 else "baseline"
            detail = f"no successful request in the {missing} to rank"
            return Result(
                check.target, check.metric, False, current, check.text, detail, "relative"
            )
        test = mann_whitney(base_rates, rates)
        p = test.p_greater if check.op == "<=" else test.p_less
        significant = p < 1 - options.confidence
        detail = (
            f"baseline {format_value(base)} -> {format_value(current)}, change {_pct(change)}; "
            f"rank test on per-request tokens/s: one-sided p={p:.3g}, "
            f"P(run>baseline)={test.superiority:.2f}, "
            f"{'significant' if significant else 'not significant'}"
        )
        failed = violated and significant
    else:
        detail = (
            f"baseline {format_value(base)} -> {format_value(current)}, change {_pct(change)}; "
            "point comparison (not a per-request distribution: no interval)"
        )
        failed = violated
    return Result(check.target, check.metric, not failed, current, check.text, detail, "relative")


def _relative_distribution(
    check: Check, run: Run, baseline: Run, options: GateOptions, family: str, stat: str
) -> Result:
    now, then = run.sample(check.target, family), baseline.sample(check.target, family)
    current, current_groups, base, base_groups = now.values, now.rows, then.values, then.rows
    if current.size == 0 or base.size == 0:
        missing = "run" if current.size == 0 else "baseline"
        return Result(
            check.target,
            check.metric,
            False,
            None,
            check.text,
            f"no {family} samples in the {missing}",
            "relative",
        )
    q: float | str = "mean" if stat == "mean" else PERCENTILES[stat]
    estimate_b = float(np.percentile(base, q) if q != "mean" else base.mean())
    estimate_c = float(np.percentile(current, q) if q != "mean" else current.mean())
    if estimate_b <= 0:  # no relative change to bootstrap: judge the point change, as for scalars
        change = _change(estimate_b, estimate_c)
        violated = change > check.value if check.op == "<=" else change < check.value
        detail = f"baseline {format_value(estimate_b)} -> {format_value(estimate_c)}, point change"
        return Result(
            check.target, check.metric, not violated, estimate_c, check.text, detail, "relative"
        )
    try:
        iv = percentile_diff_ci(
            base,
            current,
            q,
            options.confidence,
            options.n_boot,
            options.seed,
            relative=True,
            groups_a=base_groups,
            groups_b=current_groups,
        )
    except ValueError as exc:
        raise UsageError(f"{check.target} {check.metric}: {exc}") from exc
    violated, significant = judge_change(check.op, check.value, iv)
    verdict = "significant" if significant else "not significant"
    detail = (
        f"baseline {format_value(estimate_b)} -> {format_value(estimate_c)} "
        f"(n={base.size} -> {current.size}), "
        f"change {_pct(iv.estimate)} [{_pct(iv.low)}, {_pct(iv.high)}] "
        f"{iv.confidence:.0%} CI, {verdict}"
    )
    passed = not (violated and significant)
    return Result(check.target, check.metric, passed, estimate_c, check.text, detail, "relative")


def judge_change(op: str, tolerance: float, iv: Interval) -> tuple[bool, bool]:
    """(beyond the tolerance?, significantly on the bad side?) for a relative change interval.

    ``<= t``: bad means larger; significant when the whole interval is above min(0, t) — above 0
    for the usual non-negative tolerance (a real slowdown), above t when t demands a speed-up.
    ``>= t`` mirrors it. The check fails only when both are true.
    """
    if op == "<=":
        return iv.estimate > tolerance, iv.low > min(0.0, tolerance)
    return iv.estimate < tolerance, iv.high < max(0.0, tolerance)


def _change(base: float, current: float) -> float:
    if base == 0:
        return 0.0 if current == 0 else math.copysign(math.inf, current)
    return current / base - 1.0


def _derived(check: Check, run: Run, thresholds: Thresholds) -> Result:
    roles = thresholds.derived
    metric = check.metric
    if metric == "goodput_pct":
        return _goodput(check, run, thresholds)
    family, stat = metric.split(".", 1)
    relay = _role_entry(run, roles.relay_target, metric)
    if family == "streaming_ttft_reduction_pct":
        other_name = roles.buffered_target
        other = _role_entry(run, other_name, metric)
        r = metric_value(relay, f"ttft_ms.{stat}", f"target {roles.relay_target!r}")
        o = metric_value(other, f"ttft_ms.{stat}", f"target {other_name!r}")
        value = None if r is None or not o else 100.0 * (1.0 - r / o)
        detail = (
            f"{roles.relay_target} ttft {format_value(r)} vs {other_name} ttft {format_value(o)} ms"
        )
    else:
        source = family.removeprefix("relay_added_")
        other_name = roles.direct_target
        other = _role_entry(run, other_name, metric)
        r = metric_value(relay, f"{source}.{stat}", f"target {roles.relay_target!r}")
        o = metric_value(other, f"{source}.{stat}", f"target {other_name!r}")
        value = None if r is None or o is None else r - o
        detail = f"{roles.relay_target} {format_value(r)} - {other_name} {format_value(o)} ms"
    if value is None:
        return Result(
            "derived", metric, False, None, check.text, f"no measurement: {detail}", "derived"
        )
    return Result(
        "derived", metric, _met(check.op, value, check.value), value, check.text, detail, "derived"
    )


def _goodput(check: Check, run: Run, thresholds: Thresholds) -> Result:
    roles = thresholds.derived
    _role_entry(run, roles.relay_target, check.metric)
    frame = run.records(roles.relay_target)
    if len(frame) == 0:
        raise UsageError(f"goodput_pct: target {roles.relay_target!r} has no records")
    good = frame["ok"] & (frame["ttft_ms"] <= roles.slo_ttft_ms)
    slo = f"ttft <= {format_value(roles.slo_ttft_ms)} ms"
    if roles.slo_e2e_ms is not None:
        good &= frame["e2e_ms"] <= roles.slo_e2e_ms
        slo += f", e2e <= {format_value(roles.slo_e2e_ms)} ms"
    count = int(good.fillna(False).sum())
    value = 100.0 * count / len(frame)
    detail = f"{count}/{len(frame)} {roles.relay_target} requests ok with {slo}"
    return Result(
        "derived",
        check.metric,
        _met(check.op, value, check.value),
        value,
        check.text,
        detail,
        "derived",
    )


def _role_entry(run: Run, target: str, metric: str) -> dict:
    if target not in run.targets:
        known = ", ".join(run.targets) or "none"
        raise UsageError(
            f"derived metric {metric} needs target {target!r}, which {run.path} does not have "
            f"(its targets: {known}); name the role in [derived] (direct_target, relay_target, "
            "buffered_target)"
        )
    return run.targets[target]


def format_value(value: float | None) -> str:
    if value is None:
        return "n/a"
    if math.isinf(value) or abs(value) >= 1000:
        return f"{value:.0f}"
    return f"{value:.4g}"


def _pct(fraction: float) -> str:
    return f"{fraction * 100:+.1f}%" if math.isfinite(fraction) else f"{fraction:+}"
