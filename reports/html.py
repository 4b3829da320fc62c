"""report.html: one self-contained file (charts inline as base64 PNG, no external request).

Rendered with Jinja2 and autoescape on, so record text (error details, target names, commands)
can never inject markup. The page has no script and no remote URL.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2

from reports import markdown as md

if TYPE_CHECKING:
    from reports.pipeline import Analysis

CAPTIONS = {
    "ttft_cdf": "Share of requests (y) whose first token arrived within x ms. Further left is "
    "faster; the gap between curves at the p95 line is the tail difference.",
    "perceived_latency": "What a user waits before seeing anything: the buffered target's whole "
    "answer versus the streaming target's first token. The % is the change streaming makes.",
    "timeline": "Load and its effects on one time axis (1-second bins): when users or req/s "
    "rise, watch whether TTFT p95 and errors follow.",
    "latency_vs_load": "TTFT percentiles (left axis) and throughput (right axis) per step. The "
    "knee is where latency starts to climb; capacity is the last step under the SLO line.",
    "itl": "How evenly tokens arrive once streaming has started. A second hump or a long right "
    "tail means stalls between chunks.",
    "relay_overhead": "Lag added by each relay on top of the direct path (arrival minus the "
    "mock's emission stamp, relay minus direct), with 95% bootstrap intervals.",
    "errors": "Failed requests per second, stacked by error type.",
}

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def render_html(a: Analysis) -> str:
    s = a.summary
    charts = [
        {"title": md.CHART_TITLES[key], "caption": CAPTIONS[key], "src": data_uri(path),
         "name": path.name}
        for key, path in a.charts.items()
    ]  # fmt: skip
    tables = {
        "verdict": md.verdict_rows(s, a.folder.meta.get("slo")),
        "results": md.results_rows(s),
        "overhead": md.overhead_rows(s),
        "calibration": md.calibration_rows(s),
        "response": md.response_time_rows(s),
        "errors": md.errors_rows(s),
    }
    plan = None
    if a.plan:
        plan = {
            "sentences": md.plan_sentences(a.plan),
            "steps": md.plan_rows(a.plan),
            "cost_sentence": md.cost_sentence(a.plan),
            "cost": md.cost_rows(a.plan),
        }
    return _ENV.get_template("report.html.j2").render(
        run=s["run"],
        health=s["health"],
        notes=list(s.get("notes") or []) + a.chart_notes,
        tables=tables,
        calibration_sentence=md.calibration_sentence(s),
        charts=charts,
        plan=plan,
        metadata=md.metadata_lines(a.folder.meta, s["run"]),
        folder=a.folder.path.name,
    )


def render_compare(context: dict) -> str:
    return _ENV.get_template("compare.html.j2").render(**context)
