"""The real probe: one ``relaybench run`` of one target at one load, into its own run folder.

``RunProbe`` runs the probe through ``relaybench.run``'s orchestrator (same load generator,
records, health), then ``evaluate`` judges the folder. ``evaluate`` reads nothing but the folder,
so ``relaybench report`` on a search folder re-judges every probe from its records.

Judging:

- open loop (``constant``/``poisson``/``trace``): TTFT and E2E are **response times**, from each
  request's intended start, so a target that makes arrivals queue is charged for the wait
  (no coordinated omission);
- the health block (``reports.health``) comes first: a degraded probe is never a pass or a fail.
  The load generator's CPU, its schedule lag, a short achieved rate and records that do not add
  up make it ``harness-bound``; the mock's own lateness ``mock-bound``. One exception: when the
  open-loop in-flight cap was full, late sends and a short rate are the target's doing (it held
  every slot), so the probe is judged, and fails;
- a probe in which no request succeeded is ``all-failed``;
- Little's law: at steady state ``in flight = rate × mean E2E``; a probe shorter than three mean
  E2E times never gets there, which is flagged on the probe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from relaybench.errors import UsageError
from relaybench.run.config import LoadConfig, Target
from relaybench.run.servers import MockSettings
from relaybench.search.bracket import (
    ALL_FAILED,
    HARNESS_BOUND,
    INTERRUPTED,
    MOCK_BOUND,
    NO_REQUESTS,
    ProbeRequest,
    ProbeResult,
)
from relaybench.search.slo import FAIL, SLO, judge, outcome_of

# the load axis of each scenario and its unit
AXES = {"constant": "rate", "poisson": "rate", "steady": "users", "trace": "rate_scale"}
UNITS = {"rate": "req/s", "users": "users", "rate_scale": "× the trace's rate"}
STEADY_E2E_TIMES = 3.0  # a probe shorter than this many mean E2E times is flagged
_STAT_KEYS = (
    "requests",
    "ok",
    "errors",
    "error_rate",
    "requests_per_s",
    "output_tokens_per_s",
    "ttft_ms",
    "e2e_ms",
    "itl_ms",
    "ttft_response_ms",
    "e2e_response_ms",
    "schedule_lag_ms",
    "first_token_lag_ms",
    "server",
)


@dataclass
class RunProbe:
    """Probes one target; each call writes ``out_dir/<NN>-<role>-<load>/``."""

    out_dir: Path
    target: Target
    template: LoadConfig
    slo: SLO
    scenario: str
    command: str
    users: int  # closed loop: unused; open loop: the smallest in-flight cap
    mock_url: str | None = None
    mock: MockSettings | None = None
    e2e_guess_s: float = 10.0  # until a probe measured one
    scrape_pids: list[tuple[str, int]] = field(default_factory=list)  # our servers' processes
    scrape_urls: list[tuple[str, str]] = field(default_factory=list)  # their /metrics
    seen_e2e_s: list[float] = field(default_factory=list)

    @property
    def axis(self) -> str:
        return AXES[self.scenario]

    def in_flight_cap(self, load: float) -> int:
        """Open loop: room for twice the Little's-law concurrency at the slowest E2E seen."""
        e2e = max([self.e2e_guess_s, *self.seen_e2e_s])
        rate = (
            load * trace_rates(self.template)["replay_rps"] if self.axis == "rate_scale" else load
        )
        return max(self.users, math.ceil(2 * rate * e2e) + 4)

    def config(self, req: ProbeRequest, run_dir: Path) -> LoadConfig:
        """The run of one probe: the template at this load, for ``req.seconds``."""
        base = self.template
        cfg = replace(base, run_dir=str(run_dir))
        if self.axis == "users":
            shape = replace(base.shape, scenario="steady", users=int(req.load))
        elif self.axis == "rate":
            cap = self.in_flight_cap(req.load)
            shape = replace(base.shape, scenario=self.scenario, rate=req.load, users=cap)
        else:  # the trace, replayed at req.load times its own rate
            shape = replace(base.shape, users=self.in_flight_cap(req.load))
            cfg = replace(cfg, traffic=replace(base.traffic, rate_scale=req.load))
        return replace(cfg, shape=replace(shape, duration_s=req.seconds))

    def _run_slo(self) -> dict[str, float] | None:
        """The SLOs a run folder's own report judges (those of ours it knows), in run.json."""
        pairs = (("ttft_ms_p95", self.slo.ttft_p95_ms), ("error_rate", self.slo.error_rate))
        return {k: v for k, v in pairs if v is not None} or None

    def __call__(self, req: ProbeRequest) -> ProbeResult:
        from relaybench.run.orchestrator import Orchestrator, RunPlan

        run_dir = self.out_dir / f"{req.index:02d}-{req.role}-{req.load:g}"
        load = self.config(req, run_dir)
        plan = RunPlan(
            run_dir=run_dir,
            command=self.command,
            load=load,
            targets=[self.target],
            buffered=set() if self.target.stream else {self.target.name},
            mock=self.mock or MockSettings(),
            slo=self._run_slo(),
            mock_url=self.mock_url,
            full_report=False,
            scrape_pids=list(self.scrape_pids),
            scrape_urls=list(self.scrape_urls),
        )
        unit = UNITS[self.axis]
        print(f"-- probe {req.index + 1} ({req.role}): {req.load:g} {unit}, {req.seconds:g} s")
        orchestrator = Orchestrator(plan)
        try:
            orchestrator.run()
        except UsageError:  # the summary of a probe whose record files stayed empty
            if _recorded(run_dir) or not any((run_dir / "records").glob("*.jsonl")):
                raise  # e.g. an unreachable target: refused before any load
        if not _recorded(run_dir) and not orchestrator.interrupted:
            reason = f"{self.target.name}: the probe sent no request in its {req.seconds:g} s"
            return ProbeResult(
                req.load, req.seconds, NO_REQUESTS, folder=str(run_dir), reasons=[reason]
            )
        _annotate(run_dir, req, self.axis, self.slo, self.mock, load.shape.users)
        if orchestrator.interrupted:
            return ProbeResult(
                req.load,
                req.seconds,
                INTERRUPTED,
                folder=str(run_dir),
                reasons=["interrupted (Ctrl-C)"],
            )
        result = evaluate(run_dir, self.target.name, req.load, req.seconds, self.slo)
        e2e = (result.stats.get("e2e_ms") or {}).get("p95")
        if isinstance(e2e, int | float):
            self.seen_e2e_s.append(e2e / 1000)
        checks = ", ".join(
            f"{c.metric} {_fmt(c.value)} [{_fmt(c.low)}, {_fmt(c.high)}] {c.outcome}"
            for c in result.checks
        )
        print(f"   {result.verdict}: {checks or '; '.join(result.reasons)}", flush=True)
        for warning in result.warnings:
            print(f"   warning: {warning}", flush=True)
        return result


def trace_rates(template: LoadConfig) -> dict[str, float]:
    """The replayed trace at rate scale 1: its mean rate as replayed, and its busiest minute in
    the trace's own time (what "10x our real peak" multiplies)."""
    traffic = template.traffic
    key = (traffic.trace_path, traffic.trace_start_s, traffic.trace_window_s, traffic.speedup)
    if key not in _TRACE_RATES:
        schedule = replace(traffic, rate_scale=1.0).schedule(template.seed)
        span_s = max(schedule.span_s, 1e-9)
        width = min(60.0, span_s * traffic.speedup)  # trace seconds: a minute, or the whole cut
        busiest = schedule.per_bin(width / traffic.speedup).max()
        _TRACE_RATES[key] = {
            "replay_rps": len(schedule) / span_s,
            "busiest_rps": float(busiest) / width,
            "busiest_window_s": width,
        }
    return _TRACE_RATES[key]


_TRACE_RATES: dict[tuple, dict[str, float]] = {}


def _annotate(
    run_dir: Path, req: ProbeRequest, axis: str, slo: SLO, mock: MockSettings | None, cap: int
) -> None:
    """Record the probe's place in the search in its run.json (for rebuilds and readers)."""
    path = run_dir / "run.json"
    if not path.exists():
        return
    meta = orjson.loads(path.read_bytes())
    meta["search_probe"] = {
        "load": req.load,
        "axis": axis,
        "seconds": req.seconds,
        "role": req.role,
        "index": req.index,
        "slo": slo.as_dict(),
        "in_flight_cap": cap,
    }
    if mock is not None and not meta.get("mock"):
        meta["mock"] = mock.as_dict()
    path.write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))


def evaluate(run_dir: Path, name: str, load: float, seconds: float, slo: SLO) -> ProbeResult:
    """Judge one probe folder: health first, then the SLO checks (see the module docstring)."""
    from reports.folder import load_folder
    from reports.samples import counted
    from reports.summary import write_summary

    if not _recorded(run_dir):
        return ProbeResult(
            load,
            seconds,
            NO_REQUESTS,
            folder=str(run_dir),
            reasons=[f"{name}: the probe sent no request in its {seconds:g} s"],
        )
    summary = write_summary(run_dir)
    folder = load_folder(run_dir)
    rows = folder.groups().get(name)
    if rows is not None:  # requests the probe's end cut off say nothing about the target
        rows = counted(rows)
    meta = folder.meta.get("search_probe") or {}
    stats = {k: v for k, v in (summary["targets"].get(name) or {}).items() if k in _STAT_KEYS}
    health = dict(summary.get("health") or {})
    out = ProbeResult(load, seconds, FAIL, stats=stats, health=health, folder=str(run_dir))
    if rows is None or not len(rows):
        out.verdict, out.reasons = ALL_FAILED, [f"{name}: no request was recorded"]
        return out
    ok = rows["ok"].to_numpy(dtype=bool)
    start = rows["start_ns"].to_numpy(dtype=np.float64)
    intended = rows["intended_ns"].to_numpy(dtype=np.float64)
    wait_ms = np.where(np.isnan(intended), 0.0, (start - intended) / 1e6)
    ttft = rows["ttft_ms"].to_numpy(dtype=np.float64) + wait_ms
    e2e = rows["e2e_ms"].to_numpy(dtype=np.float64) + wait_ms
    cap = meta.get("in_flight_cap")
    peak = _peak_in_flight(start, rows["e2e_ms"].to_numpy(dtype=np.float64))
    stats["in_flight_max"] = peak
    stats["in_flight_cap"] = cap
    stats["achieved_rps"] = out.achieved_rps = stats.get("requests_per_s")
    stats["ok_rps"] = round(float(ok.sum()) / seconds, 3)
    stats["response_time"] = bool(np.isfinite(intended).any())
    cap_full = bool(stats["response_time"] and isinstance(cap, int) and peak >= cap)
    harness, mock, target = _classify(health.get("reasons") or [], cap_full)
    out.warnings = _littles_law(stats, seconds)
    if mock or harness:
        out.verdict = MOCK_BOUND if mock and not harness else HARNESS_BOUND
        out.reasons = harness + mock
        return out
    if not ok.any():
        errors = ", ".join(f"{k} {v}" for k, v in (stats.get("errors") or {}).items())
        out.verdict = ALL_FAILED
        out.reasons = [f"{name}: all {ok.size} requests failed ({errors or 'no error type'})"]
        return out
    out.checks = judge(slo, ok, ttft, e2e, seed=int(meta.get("index") or 0))
    out.verdict = outcome_of(out.checks)
    if target:
        out.verdict, out.reasons = FAIL, target
    return out


def _recorded(run_dir: Path) -> bool:
    """Whether any record file of the probe has content."""
    return any(p.stat().st_size for p in (Path(run_dir) / "records").glob("*.jsonl"))


def _classify(reasons: list[str], cap_full: bool) -> tuple[list[str], list[str], list[str]]:
    """Split health reasons into the harness's, the mock's, and (cap full) the target's."""
    harness, mock, target = [], [], []
    for reason in reasons:
        if "the mock emitted" in reason or "the mock, not the target" in reason:
            mock.append(reason)
        elif cap_full and ("schedule lag" in reason or "achieved" in reason):
            target.append(
                reason + " The target held every in-flight slot, so the lateness is its own."
            )
        else:  # CPU, schedule lag, short rate, lost records — or a check we do not know yet
            harness.append(reason)
    return harness, mock, target


def _peak_in_flight(start_ns: np.ndarray, e2e_ms: np.ndarray) -> int:
    """The most requests open at once, from each record's send and end."""
    if not start_ns.size:
        return 0
    end = start_ns + np.nan_to_num(e2e_ms, nan=0.0) * 1e6
    times = np.r_[start_ns, end]
    steps = np.r_[np.ones(start_ns.size), -np.ones(end.size)]
    order = np.lexsort((steps, times))  # at equal times an end (-1) comes before a start
    return int(np.cumsum(steps[order]).max())


def _littles_law(stats: dict[str, Any], seconds: float) -> list[str]:
    mean = (stats.get("e2e_ms") or {}).get("mean")
    rps = stats.get("requests_per_s")
    if not isinstance(mean, int | float) or not isinstance(rps, int | float):
        return []
    e2e_s = mean / 1000
    if seconds >= STEADY_E2E_TIMES * e2e_s:
        return []
    return [
        f"the probe ({seconds:g} s) is shorter than {STEADY_E2E_TIMES:g} mean E2E times "
        f"({e2e_s:.1f} s each): by Little's law about {rps * e2e_s:.0f} requests are in flight "
        f"at steady state (rate {rps:.2f}/s × E2E {e2e_s:.1f} s), and a probe this short ends "
        f"while that queue is still filling; use --probe-s {math.ceil(STEADY_E2E_TIMES * e2e_s)}"
        " or more"
    ]


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:g}"
