"""report.md and the markdown tables the CLI prints: ``reports.tables`` rendered as markdown."""

from __future__ import annotations

from reports.tables import (
    CHART_TITLES,
    SERVER_NOTE,
    PlanTables,
    Report,
    Table,
    fmt,
    plan_tables,
    results_rows,
)

__all__ = ["fmt", "health_lines", "plan_markdown", "report_markdown", "results_table", "table"]


def table(header: list[str], rows: list[list[str]]) -> str:
    aligns = ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(aligns) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _table_or(rows: Table | None, empty: str) -> str:
    return table(*rows) if rows else empty


def results_table(summary: dict) -> str:
    """One row per target: requests, errors, TTFT/ITL/E2E percentiles, throughput, lag."""
    return table(*results_rows(summary))


def health_lines(summary: dict) -> str:
    health = summary.get("health") or {}
    cpu = health.get("loadgen_cpu_max_pct")
    checked = "; ".join(health.get("checked") or []) or "no load-generator samples or mock stats"
    if not health.get("degraded"):
        text = f"**Health: OK** — load generator CPU max {fmt(cpu, 0)}%. Checked: {checked}."
    else:
        lines = [f"**Health: DEGRADED** — load generator CPU max {fmt(cpu, 0)}%."]
        lines += [f"- ⚠ {reason}" for reason in health.get("reasons") or []]
        text = "\n".join(lines)
    return text + leak_lines(health.get("leaks") or [])


def leak_lines(leaks: list[str]) -> str:
    """The leak watch's findings, after the health line: about the target, not the measurement."""
    if not leaks:
        return ""
    return "\n\n**Leak watch:**\n" + "\n".join(f"- ⚠ {sentence}" for sentence in leaks)


def plan_markdown(plan: dict) -> str:
    return _plan(plan_tables(plan))


def _plan(tables: PlanTables) -> str:
    parts = ["\n".join(f"- {line}" for line in tables.sentences)]
    if tables.steps:
        parts.append(table(*tables.steps))
    if tables.cost:
        parts += [tables.cost_sentence or "", table(*tables.cost)]
    return "\n\n".join(parts)


def report_markdown(r: Report) -> str:
    """report.md: the same tables as report.html, fit for a PR comment or a CI step summary."""
    run = r.run
    parts = [
        f"# relaybench report — {run['scenario']}, {run['started_at']}",
        health_lines({"health": {**r.health, "leaks": r.leaks}}),
    ]
    if r.notes:
        parts.append("**Input notes:**\n" + "\n".join(f"- {n}" for n in r.notes))
    parts += ["## Verdict", table(*r.verdict)]
    parts += ["## Results (ms unless stated)", table(*r.results)]
    parts += [
        "## Relay overhead versus direct",
        _table_or(r.overhead, "No relay target measured against `direct`."),
    ]
    if r.calibration:
        parts += [
            "## Versus the harness's calibration",
            r.calibration_sentence or "",
            table(*r.calibration),
        ]
    if r.response:
        parts += [
            "## Service time vs response time (open loop, coordinated omission)",
            "Service time counts from the actual send; response time from the intended start.",
            table(*r.response),
        ]
    if r.server:
        parts += ["## Server side", SERVER_NOTE, table(*r.server)]
    parts += ["## Errors", _table_or(r.errors, "No errors.")]
    if r.causes:
        parts += ["Top causes (status and the first line of the body or exception):"]
        parts.append(table(*r.causes))
    if r.plan:
        parts += ["## Capacity plan", _plan(r.plan)]
    if r.charts:
        parts.append("## Charts")
        parts += [f"![{CHART_TITLES[k]}]({p.name})" for k, p in r.charts.items()]
    parts += ["## Run", "\n".join(f"- {k}: {v}" for k, v in r.metadata)]
    return "\n\n".join(parts) + "\n"
