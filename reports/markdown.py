"""Markdown tables from a summary dict: the results table the orchestrator prints, and report.md."""

from __future__ import annotations


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


def table(header: list[str], rows: list[list[str]]) -> str:
    aligns = ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(aligns) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def results_table(summary: dict) -> str:
    """One row per target: requests, errors, TTFT/ITL/E2E percentiles, throughput, lag."""
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
        requests = t.get("requests") or 0
        error_rate = (requests - (t.get("ok") or 0)) / requests if requests else None
        rows.append(
            [
                f"`{name}`",
                fmt(requests),
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
    return table(header, rows)


def health_lines(summary: dict) -> str:
    health = summary.get("health") or {}
    cpu = health.get("loadgen_cpu_max_pct")
    if not health.get("degraded"):
        return f"**Health: OK** — load generator CPU max {fmt(cpu, 0)}%."
    lines = [f"**Health: DEGRADED** — load generator CPU max {fmt(cpu, 0)}%."]
    lines += [f"- ⚠ {reason}" for reason in health.get("reasons") or []]
    return "\n".join(lines)


def errors_table(summary: dict) -> str:
    kinds = sorted({k for t in summary["targets"].values() for k in t.get("errors") or {}})
    if not kinds:
        return "No errors."
    rows = [
        [f"`{name}`"] + [fmt((t.get("errors") or {}).get(k, 0)) for k in kinds]
        for name, t in summary["targets"].items()
    ]
    return table(["target", *kinds], rows)


def overhead_table(summary: dict) -> str:
    overhead = summary.get("overhead") or {}
    if not overhead:
        return "No relay target measured against `direct`."
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
                rows.append([f"`{name}`", label, fmt(value["value"], 2), ci])
    return table(["relay target", "vs direct", "difference", "95% CI"], rows)


def response_time_table(summary: dict) -> str | None:
    """Coordinated omission: service time (from send) beside response time (from intended)."""
    rows = []
    for name, t in summary["targets"].items():
        if "ttft_response_ms" not in t:
            continue
        rows.append(
            [
                f"`{name}`",
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
    return table(header, rows)
