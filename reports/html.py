"""report.html: ``reports.tables`` rendered as one self-contained file (charts inline as
base64 PNG, no external request).

Rendered with Jinja2 and autoescape on, so record text (error details, target names, commands)
can never inject markup. The page has no script and no remote URL.
"""

from __future__ import annotations

import base64
from pathlib import Path

import jinja2

from reports import traffic
from reports.tables import CHART_TITLES, SERVER_NOTE, Report

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
    **traffic.CAPTIONS,
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


def render_html(r: Report) -> str:
    charts = [
        {"title": CHART_TITLES[key], "caption": CAPTIONS[key], "src": data_uri(path),
         "name": path.name}
        for key, path in r.charts.items()
    ]  # fmt: skip
    tables = {
        "verdict": r.verdict,
        "results": r.results,
        "overhead": r.overhead,
        "calibration": r.calibration,
        "response": r.response,
        "errors": r.errors,
        "causes": r.causes,
        "server": r.server,
    }
    return render(
        "report.html.j2",
        run=r.run,
        health=r.health,
        notes=r.notes,
        leaks=r.leaks,
        server_note=SERVER_NOTE,
        tables=tables,
        calibration_sentence=r.calibration_sentence,
        charts=charts,
        plan=r.plan,
        metadata=r.metadata,
        folder=r.folder,
    )


def render(template: str, **context: object) -> str:
    """``reports/templates/<template>`` rendered: the one Jinja2 environment of every page
    (autoescape on, undefined names an error), so no page sets up its own."""
    return _ENV.get_template(template).render(**context)


def render_compare(context: dict) -> str:
    return render("compare.html.j2", **context)
