"""``rebuild(run_dir)``: summary.json, the charts, report.md and report.html from the records.

The orchestrator calls it at the end of ``relaybench run``; ``relaybench report DIR`` calls it on
any folder (a folder copied from another machine rebuilds the same report). A chart that cannot
be drawn is noted in the report instead of failing the whole rebuild: partial reports beat none.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from reports import charts, traffic
from reports.capacity import PlanInput, kneedle, plan
from reports.folder import RunFolder, load_folder
from reports.html import render_html
from reports.markdown import report_markdown
from reports.samples import ok, select
from reports.summary import is_relay, save_summary, summarize
from reports.tables import build_report
from reports.timeseries import errors_per_second, is_step_run, per_second, per_step

CHART_FILES = {
    "ttft_cdf": "ttft_cdf.png",
    "perceived_latency": "perceived_latency.png",
    "timeline": "timeline.png",
    "latency_vs_load": "latency_vs_load.png",
    "itl": "itl_distribution.png",
    "relay_overhead": "relay_overhead.png",
    "errors": "errors_over_time.png",
}


@dataclass
class Analysis:
    """Everything a report shows, computed once."""

    folder: RunFolder
    summary: dict
    series: pd.DataFrame
    errors: pd.DataFrame
    steps: pd.DataFrame
    plan: dict | None
    charts: dict[str, Path] = field(default_factory=dict)
    chart_notes: list[str] = field(default_factory=list)


def analyse(run_dir: Path, plan_input: PlanInput | None = None) -> Analysis:
    folder = load_folder(Path(run_dir))
    summary = summarize(folder)
    steps = per_step(folder) if is_step_run(folder) else pd.DataFrame()
    series = per_second(folder)
    capacity = None
    relays = [n for n in summary["targets"] if is_relay(n, folder.target_meta(n))]
    if len(steps) or plan_input is not None:
        capacity = plan(
            steps,
            series,
            plan_input or default_plan_input(folder),
            names=list(summary["targets"]),
            open_loop=bool(folder.frame["intended_ns"].notna().any()),
            mean_output_tokens=_mean_output_tokens(folder),
            mean_input_tokens=_mean_input_tokens(folder),
            servers={n: summary["targets"][n].get("server") for n in relays},
        )
    return Analysis(folder, summary, series, errors_per_second(folder), steps, capacity)


def default_plan_input(folder: RunFolder) -> PlanInput:
    """SLOs from run.json when it has them, else the defaults (TTFT p95 1 s, 1% errors)."""
    slo = folder.meta.get("slo") or {}
    kwargs = {}
    if isinstance(slo.get("ttft_ms_p95"), int | float):
        kwargs["slo_ttft_p95_ms"] = float(slo["ttft_ms_p95"])
    if isinstance(slo.get("error_rate"), int | float):
        kwargs["slo_error_rate"] = float(slo["error_rate"])
    return PlanInput(peak_multiple=10.0, **kwargs)


def _mean_output_tokens(folder: RunFolder) -> float | None:
    done = ok(folder.frame)
    return float(done["output_tokens"].mean()) if len(done) else None


def _mean_input_tokens(folder: RunFolder) -> float | None:
    """The prompts' mean size, from the records that carry one (trace replay, chat)."""
    prompts = ok(folder.frame)["prompt_tokens"].dropna()
    return float(prompts.mean()) if len(prompts) else None


def rebuild(run_dir: Path, plan_input: PlanInput | None = None) -> dict:
    """Write summary.json, timeseries.csv (and steps.csv for step runs), the chart PNGs,
    report.md and report.html; return the summary."""
    run_dir = Path(run_dir)
    analysis = analyse(run_dir, plan_input)
    save_summary(run_dir, analysis.summary)
    analysis.series.to_csv(run_dir / "timeseries.csv", index=False, float_format="%.3f")
    if len(analysis.steps):
        analysis.steps.to_csv(run_dir / "steps.csv", index=False, float_format="%.3f")
    draw_charts(analysis, run_dir)
    report = build_report(
        analysis.summary,
        analysis.folder.meta,
        analysis.plan,
        analysis.folder.path.name,
        analysis.charts,
        analysis.chart_notes,
    )
    (run_dir / "report.md").write_text(report_markdown(report))
    (run_dir / "report.html").write_text(render_html(report))
    return analysis.summary


def draw_charts(analysis: Analysis, out_dir: Path) -> dict[str, Path]:
    for key, draw in chart_plan(analysis).items():
        path = out_dir / (CHART_FILES.get(key) or traffic.FILES[key])  # traffic: trace/chat/retry
        try:
            analysis.charts[key] = draw(path)
        except Exception as exc:  # a broken chart must not cost the rest of the report
            analysis.chart_notes.append(f"chart {path.name} could not be drawn: {exc!r}")
    return analysis.charts


def chart_plan(a: Analysis) -> dict[str, Callable[[Path], Path]]:
    """Which charts this run supports, each as a function of its output path."""
    groups = a.folder.groups()
    names = list(a.summary["targets"])
    out: dict[str, Callable[[Path], Path]] = {}
    ttft = {n: select(a.folder.records, groups[n], "ttft_ms").values for n in names}
    out["ttft_cdf"] = lambda p: charts.ttft_cdf(ttft, p)
    pair = streaming_pair(a.summary, a.folder)
    if pair:
        s, b = pair
        targets = a.summary["targets"]
        out["perceived_latency"] = lambda p: charts.perceived_latency(
            (s, targets[s]["ttft_ms"]), (b, targets[b]["ttft_ms"]), p
        )
    out["timeline"] = lambda p: charts.peak_timeline(a.series, p)
    if len(a.steps):
        slo = (a.plan or {}).get("slo", {}).get("ttft_ms_p95")
        load = (a.plan or {}).get("load_axis", "users")
        knees = _knees(a.steps, load)
        out["latency_vs_load"] = lambda p: charts.latency_vs_load(
            a.steps, p, slo_ms=slo, knees=knees, load=load
        )
    itl = {
        n: select(a.folder.records, groups[n], "itl_ms").values
        for n in names
        if a.summary["targets"][n].get("stream", True)
    }
    if itl:
        out["itl"] = lambda p: charts.itl_distribution(itl, p)
    if a.summary.get("overhead"):
        out["relay_overhead"] = lambda p: charts.relay_overhead(a.summary["overhead"], p)
    out["errors"] = lambda p: charts.errors_over_time(a.errors, p)
    out.update(traffic.chart_plan(a.folder, groups))
    return out


def _knees(steps: pd.DataFrame, load: str) -> dict[str, float | None]:
    return {
        name: kneedle(rows[load].to_numpy(dtype=float), rows["ttft_p95"].to_numpy(dtype=float))
        for name, rows in steps.groupby("target")
    }


def streaming_pair(summary: dict, folder: RunFolder) -> tuple[str, str] | None:
    """(streaming target, buffered target) for the perceived-latency chart, preferring a
    streaming target of the buffered one's kind (relay vs relay-buffered)."""
    targets = summary["targets"]
    buffered = [n for n, t in targets.items() if not t.get("stream", True) and _has(t)]
    streaming = [n for n, t in targets.items() if t.get("stream", True) and _has(t)]
    if not buffered or not streaming:
        return None
    b = buffered[0]
    same_kind = [n for n in streaming if is_relay(n, folder.target_meta(n)) == is_relay(
        b, folder.target_meta(b))]  # fmt: skip
    return (same_kind or streaming)[0], b


def _has(target: dict) -> bool:
    p50 = (target.get("ttft_ms") or {}).get("p50")
    return isinstance(p50, float | int) and math.isfinite(p50) and not np.isnan(p50)
