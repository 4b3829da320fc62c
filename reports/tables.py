"""The report's tables and sentences, built once from summary.json, the run's metadata and the
capacity plan; ``reports.markdown`` and ``reports.html`` only render them.

A ``Table`` is ``(header, rows)`` of ready-formatted cells; ``None`` means "nothing to show".
``build_report`` gathers everything report.md and report.html show into one ``Report``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reports import traffic


def fmt(value, digits: int = 1) -> str:
    """A number for a table cell; missing values show as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def _stat(block: dict | None, key: str) -> float | None:
    return block.get(key) if isinstance(block, dict) else None


Table = tuple[list[str], list[list[str]]]


def results_rows(summary: dict) -> Table:
    header = [
        "target",
        "requests",
        "ok",
        "error rate",
        "TTFT p50 ms",
        "TTFT p95 ms",
        "TTFT p99 ms",
        "ITL p50 ms",
        "E2E p95 ms",
        "req/s",
        "tokens/s",
        "first-token lag p50 ms",
    ]
    rows = []
    for name, t in (summary.get("targets") or {}).items():
        error_rate = t.get("error_rate")
        rows.append(
            [
                name,
                fmt(t.get("requests") or 0),
                fmt(t.get("ok")),
                f"{error_rate:.2%}" if error_rate is not None else "–",
                fmt(_stat(t.get("ttft_ms"), "p50")),
                fmt(_stat(t.get("ttft_ms"), "p95")),
                fmt(_stat(t.get("ttft_ms"), "p99")),
                fmt(_stat(t.get("itl_ms"), "p50")),
                fmt(_stat(t.get("e2e_ms"), "p95")),
                fmt(t.get("requests_per_s"), 2),
                fmt(t.get("output_tokens_per_s")),
                fmt(_stat(t.get("first_token_lag_ms"), "p50"), 2),
            ]
        )
    return header, rows


def errors_rows(summary: dict) -> Table | None:
    kinds = sorted({k for t in summary["targets"].values() for k in t.get("errors") or {}})
    if not kinds:
        return None
    rows = [
        [name] + [fmt((t.get("errors") or {}).get(k, 0)) for k in kinds]
        for name, t in summary["targets"].items()
    ]
    return ["target", *kinds], rows


def causes_rows(summary: dict) -> Table | None:
    """Per target, the top causes of its failed requests (summary.json ``error_causes``)."""
    rows = [
        [name, fmt(c["count"]), c["cause"]]
        for name, t in summary["targets"].items()
        for c in t.get("error_causes") or []
    ]
    return (["target", "failed requests", "cause"], rows) if rows else None


def overhead_rows(summary: dict) -> Table | None:
    overhead = summary.get("overhead") or {}
    if not overhead:
        return None
    labels = {
        "added_first_token_lag_ms_p50": "added first-token lag, p50 (ms)",
        "added_chunk_lag_ms_p50": "added chunk lag, p50 (ms)",
        "added_ttft_ms_p50": "added TTFT, p50 (ms)",
    }
    rows = []
    for name, block in overhead.items():
        for key, label in labels.items():
            value = block.get(key)
            if value:
                ci = f"[{fmt(value['ci_low'], 2)}, {fmt(value['ci_high'], 2)}]"
                rows.append([name, label, fmt(value["value"], 2), ci])
    if not rows:
        return None
    return ["relay target", "vs direct", "difference", "95% CI"], rows


def calibration_rows(summary: dict) -> Table | None:
    block = summary.get("calibration")
    if not block or not block["targets"]:
        return None
    labels = {"first_token_lag_ms": "first-token lag", "chunk_lag_ms": "chunk lag"}
    rows = []
    for name, metrics in block["targets"].items():
        for metric, by_q in metrics.items():
            for q, v in by_q.items():
                cells = [fmt(v["run"], 2), fmt(v["floor"], 2), fmt(v["excess"], 2)]
                rows.append([name, f"{labels[metric]} {q} (ms)", *cells])
    return ["target", "metric", "this run", "harness floor", "excess"], rows


def calibration_sentence(summary: dict) -> str | None:
    block = summary.get("calibration")
    if not block:
        return None
    where = "" if block["in_range"] else " (beyond the calibrated range: its largest level)"
    return (
        f"Harness floor from the calibration of {block['created_at']} at {block['level']} "
        f"streams, for {block['users']} users{where}. On `direct` the excess should be near 0; "
        "through a relay it is the relay's added latency plus what the harness lost."
    )


def response_time_rows(summary: dict) -> Table | None:
    """Coordinated omission: service time (from send) beside response time (from intended)."""
    rows = []
    for name, t in summary["targets"].items():
        if "ttft_response_ms" not in t:
            continue
        rows.append(
            [
                name,
                fmt(_stat(t.get("ttft_ms"), "p50")),
                fmt(_stat(t.get("ttft_response_ms"), "p50")),
                fmt(_stat(t.get("ttft_ms"), "p99")),
                fmt(_stat(t.get("ttft_response_ms"), "p99")),
                fmt(_stat(t.get("e2e_ms"), "p99")),
                fmt(_stat(t.get("e2e_response_ms"), "p99")),
                fmt(_stat(t.get("schedule_lag_ms"), "p99"), 2),
            ]
        )
    if not rows:
        return None
    header = [
        "target",
        "TTFT service p50",
        "TTFT response p50",
        "TTFT service p99",
        "TTFT response p99",
        "E2E service p99",
        "E2E response p99",
        "schedule lag p99",
    ]
    return header, rows


SERVER_NOTE = (
    "What each server used during each target's window, from its process samples or its "
    "/metrics: CPU (100 % = one core), CPU seconds per request and per 1,000 chunks, peak RSS, "
    "open file descriptors at the start and the end. The leak watch judges RSS and fds only "
    "while the scenario holds its load."
)


def server_rows(summary: dict) -> Table | None:
    """Per target and server (summary.json ``server``): CPU, CPU per request and per 1,000
    chunks, peak RSS, open fds start → end, and the leak watch's verdict."""
    rows = [
        [
            name,
            server,
            b.get("source") or "–",
            fmt(b.get("peak_cpu_pct"), 0),
            _sig(b.get("cpu_s_per_request")),
            _sig(b.get("cpu_s_per_1k_chunks")),
            fmt(b.get("peak_rss_mb")),
            f"{fmt(b.get('fds_start'))} → {fmt(b.get('fds_end'))}",
            _leak_cell(b.get("leak")),
        ]
        for name, t in summary["targets"].items()
        for server, b in (t.get("server") or {}).items()
    ]
    header = [
        "target",
        "server",
        "source",
        "peak CPU %",
        "CPU s / request",
        "CPU s / 1k chunks",
        "peak RSS MiB",
        "fds start → end",
        "leak watch",
    ]
    return (header, rows) if rows else None


def _sig(value: float | None) -> str:
    """Three significant digits: CPU seconds per request are often a few thousandths."""
    return "–" if value is None else f"{value:.3g}"


def _leak_cell(verdicts: dict | None) -> str:
    if not verdicts:  # not a held-load scenario, or too few samples to judge
        return "not judged"
    labels = {"rss_mb": "RSS", "fds": "fds"}
    flagged = [
        f"{labels.get(key, key)} {v['slope_per_min']:+.3g} {v['unit']}/min"
        for key, v in verdicts.items()
        if v.get("leak")
    ]
    return "grows: " + ", ".join(flagged) if flagged else "no steady growth"


def slo_verdict(t: dict, slo: dict | None) -> str:
    """One target's verdict: ``PASS``, ``FAIL: <what missed>`` or ``no SLO set`` (the report's
    verdict table and ``relaybench run``'s exit code both read it)."""
    slo = slo or {}
    limit_ms, limit_err = slo.get("ttft_ms_p95"), slo.get("error_rate")
    p95 = _stat(t.get("ttft_ms"), "p95")
    error_rate = t.get("error_rate")
    if limit_ms is None and limit_err is None:
        return "no SLO set"
    if p95 is None:
        return "FAIL: no successful request"
    misses = []
    if limit_ms is not None and p95 > limit_ms:
        misses.append("TTFT p95")
    if limit_err is not None and error_rate is not None and error_rate > limit_err:
        misses.append("error rate")
    return "FAIL: " + ", ".join(misses) if misses else "PASS"


def verdict_rows(summary: dict, slo: dict | None) -> Table:
    """Per target: TTFT p95 and error rate against the run's SLOs, and the verdict."""
    header = ["target", "TTFT p95 ms", "SLO p95 ms", "error rate", "SLO error rate", "verdict"]
    rows = []
    slo = slo or {}
    limit_ms, limit_err = slo.get("ttft_ms_p95"), slo.get("error_rate")
    for name, t in summary["targets"].items():
        p95 = _stat(t.get("ttft_ms"), "p95")
        error_rate = t.get("error_rate")
        verdict = slo_verdict(t, slo)
        rows.append(
            [
                name,
                fmt(p95),
                fmt(limit_ms),
                f"{error_rate:.2%}" if error_rate is not None else "–",
                f"{limit_err:.2%}" if isinstance(limit_err, int | float) else "–",
                verdict,
            ]
        )
    return header, rows


def plan_rows(plan: dict) -> Table | None:
    steps = plan.get("steps") or []
    if not steps:
        return None
    load = plan["load_axis"]
    header = [load, "req/s", "tokens/s", "TTFT p50", "TTFT p95", "p95 95% CI", "errors", "SLO"]
    rows = [
        [
            fmt(s[load], 1),
            fmt(s["rps"], 2),
            fmt(s["tokens_per_s"]),
            fmt(s["ttft_p50"]),
            fmt(s["ttft_p95"]),
            f"[{fmt(s['ttft_p95_ci'][0])}, {fmt(s['ttft_p95_ci'][1])}]",
            f"{s['error_rate']:.2%}",
            "meets" if s["meets_slo"] else "misses",
        ]
        for s in steps
    ]
    return header, rows


def plan_sentences(plan: dict) -> list[str]:
    """The capacity plan in plain sentences (used by report.md, report.html and `plan`)."""
    load = plan["load_axis"]
    slo = plan["slo"]
    unit = plan.get("load_unit") or ("users" if load == "users" else "req/s asked")
    out = [f"⚠ {flag}" for flag in plan.get("flags") or []]  # before any number
    out.append(
        f"Target `{plan['target']}`, SLOs: "
        + (
            plan.get("slo_text")
            or f"TTFT p95 ≤ {fmt(slo['ttft_ms_p95'], 0)} ms and error rate ≤ "
            f"{slo['error_rate']:.2%}"
        )
        + "."
    )
    cap = plan.get("capacity")
    if cap:
        sure = cap.get(f"{load}_confident")
        maybe = cap.get(f"{load}_plausible")
        crossing = cap.get(f"{load}_crossing")
        at = cap.get(f"{load}_at_max_throughput")
        bound = cap.get("limited_by_last_step")
        out.append(
            (
                "Every load measured met the SLOs, so the highest load meeting them is at least "
                if bound
                else "Highest load meeting the SLOs: "
            )
            + f"**{cap[load]:,g} {unit}** (TTFT p95 "
            f"{fmt(cap['ttft_p95'])} ms); best throughput within the SLOs "
            f"**{fmt(cap['ok_rps'], 1)} successful req/s**, {fmt(cap['tokens_per_s'], 0)} output "
            f"tokens/s" + (f" (at {_load(at)} {unit})." if at != cap[load] else ".")
        )
        out.append(
            f"Uncertainty (95% bootstrap CI of each step's p95): confidently "
            f"{_load(sure) if sure is not None else 'no step'}, plausibly up to "
            f"{_load(maybe)} {unit}"
            + (f"; p95 crosses the SLO near {_load(crossing)} {unit}." if crossing else ".")
        )
    if plan.get("knee") is not None:
        out.append(f"Knee (TTFT p95 starts to climb): about {_load(plan['knee'])} {unit}.")
    rep = plan.get("replicas")
    if rep and rep.get("replicas"):
        count = f"at most {rep['replicas']}" if rep.get("bound") == "at_most" else rep["replicas"]
        out.append(
            f"Replicas for a peak of {fmt(rep['peak_rps'], 1)} req/s — {rep['basis']} — with "
            f"{rep['headroom']:.0%} headroom: **{count}** (each carries "
            f"{fmt(rep['per_replica_rps'], 1)} successful req/s at the SLO, planned at "
            f"{fmt(rep['usable_per_replica_rps'], 1)})."
        )
        if rep.get("infrastructure_per_month") is not None:
            out.append(
                f"Infrastructure: {count} replica(s) × ${fmt(rep['replica_cost_per_month'], 2)} "
                f"per replica-month (--replica-cost) = "
                f"**${fmt(rep['infrastructure_per_month'], 0)}/month**, before tokens."
            )
    res = plan.get("resources")
    if res:
        out.append(
            f"Per replica at that load ({res['server']}'s server samples, {res['samples']} in "
            f"the window): CPU mean {fmt(res['mean_cpu_pct'])}% / peak "
            f"{fmt(res['peak_cpu_pct'])}% of one core, RSS peak {fmt(res['peak_rss_mb'])} MiB"
            + (f"; for the fleet ≈ {fmt(res['fleet_cores'], 2)} cores and "
               f"{fmt(res['fleet_rss_mb'], 0)} MiB." if "fleet_rss_mb" in res else ".")
        )  # fmt: skip
    little = plan.get("littles_law") or []
    if little:
        bad = [row for row in little if not row["consistent"]]
        ratios = [row["ratio"] for row in little if row["ratio"] is not None]
        span = f"{min(ratios):.2f}–{max(ratios):.2f}" if ratios else "–"
        out.append(
            f"Little's law (users ≈ req/s × mean E2E): ratio {span} across steps; "
            + (
                "consistent."
                if not bad
                else f"{len(bad)} step(s) off by more than 15% ("
                + (
                    "the steps are shorter than 3 mean request times, so they never reached a "
                    "steady state: run longer steps"
                    if any(row.get("short_step") for row in bad)
                    else "think time, lost requests or a measurement problem"
                )
                + ")."
            )
        )
    out += plan.get("notes") or []
    return out


def _load(x: float) -> str:
    """A load as measured: whole users stay whole, a rate scale of 0.5 stays 0.5."""
    return f"{x:.4g}" if abs(x) < 1000 else f"{x:,.0f}"


def cost_rows(plan: dict) -> Table | None:
    cost = plan.get("cost")
    if not cost:
        return None
    header = ["model", "direct $/day", "example relay $/day", "direct $/month",
              "example relay $/month", "example saving"]  # fmt: skip
    rows = [
        [
            m["model"],
            fmt(m["direct_per_day"], 2),
            fmt(m["relay_per_day"], 2),
            fmt(m["direct_per_month"], 0),
            fmt(m["relay_per_month"], 0),
            f"{m['saving_pct']:.0f}%" if m["saving_pct"] is not None else "–",
        ]
        for m in cost["models"]
    ]
    return header, rows


INPUT_SOURCES = {
    "given": "--input-tokens",
    "measured": "the records' mean prompt",
    "default": "assumed; set --input-tokens",
}


def _source(key: str | None) -> str:
    """Where the prompt size came from, as a parenthesis (none for a plan older than the key)."""
    return f" ({INPUT_SOURCES[key]})" if key in INPUT_SOURCES else ""


def cost_sentence(plan: dict) -> str | None:
    cost = plan.get("cost")
    if not cost:
        return None
    return (
        f"Cost at {fmt(cost['requests_per_day'])} requests/day (peak × load factor "
        f"{cost['load_factor']:g} × 86,400 s), {fmt(cost['input_tokens_per_request'], 1)} input"
        f"{_source(cost.get('input_tokens_source'))} and "
        f"{fmt(cost['output_tokens_per_request'], 1)} output tokens per request, prices as of "
        f"{cost['prices_as_of']} from the editable `{cost['prices_file']}`. Token cost only: "
        "the *example relay* columns are an example reseller price list shipped with the file, "
        "not what the bundled relay costs or saves; put your own prices there."
    )


CHART_TITLES = {
    "ttft_cdf": "TTFT distribution per target",
    "perceived_latency": "Perceived latency: streaming vs buffered",
    "timeline": "The run over time",
    "latency_vs_load": "Latency versus load",
    "itl": "Inter-token latency distribution",
    "relay_overhead": "Relay overhead versus direct",
    "errors": "Errors by type over time",
    **traffic.TITLES,
}


def metadata_lines(meta: dict, run: dict) -> list[tuple[str, str]]:
    env = meta.get("environment") or {}
    versions = env.get("versions") or {}
    lines = [
        ("command", f"`{run.get('command') or '–'}`"),
        ("scenario", f"{run['scenario']}: {_compact(_without(meta.get('scenario_params')))}"),
        ("started", str(run["started_at"])),
        ("duration per target", f"{fmt(run.get('duration_s'))} s"),
        ("users", str(meta.get("users", "–"))),
        ("seed", str(meta.get("seed", "–"))),
        ("mock", _compact(meta.get("mock"))),
        ("machine", f"{env.get('platform', '–')}, {env.get('cpus', '–')} CPUs, "
                    f"{env.get('processes', '–')} load-generator process(es)"),
        ("python", str(env.get("python", "–"))),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items()) or "–"),
    ]  # fmt: skip
    for name, t in (meta.get("targets") or {}).items():
        mode = "streaming" if t.get("stream") else "buffered (stream: false)"
        lines.append((f"target {name}", f"{t.get('kind') or 'external'}, {t.get('url')}, {mode}"))
    return lines


def _compact(value) -> str:
    """Settings as text a person reads: ``users 10, duration 30 s, open loop no``; unset
    values (None) are left out rather than printed as ``None``."""
    if value is None or value == {} or value == []:
        return "–"
    if isinstance(value, dict):
        parts = [f"{_label(k)} {_compact(v)}" for k, v in value.items() if v is not None]
        return ", ".join(parts) or "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return "–".join(_compact(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _without(params: dict | None, key: str = "scenario") -> dict | None:
    return {k: v for k, v in params.items() if k != key} if isinstance(params, dict) else params


def _label(key: str) -> str:
    """``duration_s`` -> ``duration (s)``, ``open_loop`` -> ``open loop``."""
    for unit in ("_ms", "_s"):
        if key.endswith(unit):
            return f"{key[: -len(unit)].replace('_', ' ')} ({unit[1:]})"
    return key.replace("_", " ")


@dataclass
class PlanTables:
    sentences: list[str]
    steps: Table | None
    cost_sentence: str | None
    cost: Table | None


def plan_tables(plan: dict) -> PlanTables:
    return PlanTables(plan_sentences(plan), plan_rows(plan), cost_sentence(plan), cost_rows(plan))


@dataclass
class Report:
    """Everything report.md and report.html show, in show order."""

    run: dict
    health: dict
    notes: list[str]
    verdict: Table
    results: Table
    overhead: Table | None
    calibration: Table | None
    calibration_sentence: str | None
    response: Table | None
    errors: Table | None
    plan: PlanTables | None
    metadata: list[tuple[str, str]]
    folder: str
    charts: dict[str, Path] = field(default_factory=dict)  # CHART_TITLES key -> PNG
    causes: Table | None = None  # the top causes of failed requests per target
    server: Table | None = None  # per target and server: CPU, RSS, fds (summary.json server)
    leaks: list[str] = field(default_factory=list)  # the leak watch's sentences (health.leaks)


def build_report(
    summary: dict,
    meta: dict,
    plan: dict | None,
    folder: str,
    charts: dict[str, Path] | None = None,
    chart_notes: list[str] | None = None,
) -> Report:
    return Report(
        run=summary["run"],
        health=summary["health"],
        notes=list(summary.get("notes") or []) + list(chart_notes or []),
        verdict=verdict_rows(summary, meta.get("slo")),
        results=results_rows(summary),
        overhead=overhead_rows(summary),
        calibration=calibration_rows(summary),
        calibration_sentence=calibration_sentence(summary),
        response=response_time_rows(summary),
        errors=errors_rows(summary),
        causes=causes_rows(summary),
        server=server_rows(summary),
        leaks=list(summary["health"].get("leaks") or []),
        plan=plan_tables(plan) if plan else None,
        metadata=metadata_lines(meta, summary["run"]),
        folder=folder,
        charts=dict(charts or {}),
    )
