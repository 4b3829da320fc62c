"""The report of a search folder (``search.json`` from ``relaybench search``).

What it shows, per target: the verdict line (capacity and bracket, or why there is none), the
probe path (every probe's load in order, coloured by verdict), latency versus load with the SLO
line and the bracket, a table of every probe (load, achieved rate, TTFT p95 with its 95%
interval, errors, health), the worker scaling when the relay was searched at several worker
counts, and the capacity plan (``reports.capacity``) from the counted probes.

The plan treats each counted probe as a step whose verdict is the search's own (which weighed
the intervals), so ``relaybench plan`` on a search folder and on a step run at the same loads
give the same replicas. Its peak is ``--peak-rps`` when given; otherwise a multiple of the load
the search found, labelled as the measurement's own load (it is not anyone's traffic).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from relaybench.errors import UsageError
from reports.capacity import PRICES, PlanInput, plan
from reports.charts import colors
from reports.html import data_uri, render
from reports.markdown import plan_markdown, table
from reports.tables import Table, fmt, plan_tables

VERDICT_COLORS = {"pass": "#2ca02c", "fail": "#d62728", "inconclusive": "#ff7f0e"}
CHARTS = {"path": "search_path.png", "latency": "search_latency_vs_load.png"}
CAPTIONS = {
    "path": "Every probe's load in the order it ran: doubling until the first failure, then "
    "bisection, then the longer confirmation (large marker). Green passed, red failed, orange "
    "inconclusive (repeated longer), grey not counted (harness- or mock-bound, interrupted). "
    "The band is the final bracket.",
    "latency": "TTFT p95 of each probe (response time for open-loop probes) with its 95% "
    "bootstrap interval, against the load; the red line is the SLO, the band the final "
    "bracket, the dashed line the capacity found.",
}


def is_search_folder(path: Path) -> bool:
    return (Path(path) / "search.json").is_file()


def load_search(path: Path) -> dict:
    file = Path(path) / "search.json"
    try:
        doc = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {file}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("kind") != "search" or "targets" not in doc:
        raise UsageError(f"{file} is not a relaybench search result")
    return doc


# -- the plan ------------------------------------------------------------------------------------


def probe_steps(doc: dict, name: str) -> pd.DataFrame:
    """The counted probes of ``name`` as the step table ``reports.capacity.plan`` reads."""
    axis = doc["axis"]
    rows = []
    for i, p in enumerate(doc["targets"][name].get("probes") or []):
        if p.get("counted") not in ("pass", "fail"):
            continue
        st = p.get("stats") or {}
        ttft = _ttft_block(st)
        check = next((c for c in p.get("checks") or [] if c["metric"] == "ttft_ms.p95"), None)
        p95 = check["value"] if check else ttft.get("p95")
        low, high = (check["low"], check["high"]) if check else (p95, p95)
        rows.append(
            {
                "target": name,
                "step": i,
                axis: float(p["load"]),
                "users": float(st.get("in_flight_cap") or p["load"]),
                "seconds": float(p["seconds"]),
                "rps": _num(st.get("requests_per_s")),
                "ok_rps": _num(st.get("ok_rps")),
                "tokens_per_s": _num(st.get("output_tokens_per_s")),
                "e2e_mean_ms": _num((st.get("e2e_ms") or {}).get("mean")),
                "ttft_p50": _num(ttft.get("p50")),
                "ttft_p95": _num(p95),
                "ttft_p99": _num(ttft.get("p99")),
                "ttft_p95_low": _num(low),
                "ttft_p95_high": _num(high),
                "error_rate": _num(st.get("error_rate"), 0.0),
                "meets": p["counted"] == "pass",
            }
        )
    frame = pd.DataFrame(rows)
    if len(frame):  # a load probed twice (a repeat, the confirmation): the last word counts
        frame = frame.drop_duplicates(subset=[axis], keep="last")
    return frame


def search_plan(doc: dict, name: str, inp: PlanInput | None = None) -> dict | None:
    """The capacity plan of one searched target (``inp`` None: the search's own plan options)."""
    steps = probe_steps(doc, name)
    if not len(steps):
        return None
    entry = doc["targets"][name]
    slo = entry.get("slo") or {}
    if inp is None:
        given = doc.get("plan_input") or {}
        inp = PlanInput(
            peak_rps=given.get("peak_rps"),
            peak_multiple=given.get("peak_multiple") or 10.0,
            headroom=given.get("headroom", 0.3),
            replica_cost=given.get("replica_cost"),
            prices=Path(given["prices"]) if given.get("prices") else PRICES,
        )
    inp = replace(
        inp,
        target=name,
        slo_ttft_p95_ms=slo.get("ttft_p95_ms") or inp.slo_ttft_p95_ms,
        slo_error_rate=slo.get("error_rate") if slo.get("error_rate") is not None else 1.0,
    )
    meeting = steps[steps["meets"]]
    trace = doc.get("trace") or {}
    if inp.peak_rps is None and trace.get("busiest_rps"):  # "10x our real peak"
        window = trace.get("busiest_window_s") or 60
        label = "minute" if window >= 60 else f"{window:.0f} s"
        inp = replace(
            inp,
            reference_rps=float(trace["busiest_rps"]),
            reference_label=f"the trace's busiest {label}",
        )
    elif inp.peak_rps is None and len(meeting):
        best = float(meeting["ok_rps"].max())
        inp = replace(
            inp,
            reference_rps=best,
            reference_own=True,
            reference_label=f"the {best:,.1f} successful req/s one replica carried at "
            "the capacity this search found",
        )
    axis = doc["axis"]
    out = plan(
        steps,
        pd.DataFrame(),
        inp,
        names=[name],
        open_loop=axis != "users",
        mean_output_tokens=_mean_tokens(steps),
        axis=(axis, doc.get("unit") or axis) if axis == "rate_scale" else None,
        servers={name: _capacity_server(doc, name)} if entry.get("kind") == "relay" else None,
    )
    out["slo_text"] = _slo_text(slo)
    out["search_status"] = entry.get("status")
    rep = out.get("replicas") or {}
    if entry.get("status") != "found" and rep.get("replicas"):
        rep["bound"] = "at_most"  # the capacity is only known from below
    if entry.get("status") not in ("found", "no-failure", None):
        out["flags"].insert(
            0,
            f"The search did not find the capacity ({entry.get('message')}): the plan below "
            "uses the highest load that passed, a lower bound, so its replica count is an upper "
            "bound.",
        )
    return out


def _capacity_server(doc: dict, name: str) -> dict | None:
    """The server block of the probe at the capacity (the relay's CPU and RSS there)."""
    entry = doc["targets"][name]
    capacity = (entry.get("bracket") or {}).get("low")  # the highest counted pass
    for p in reversed(entry.get("probes") or []):
        if p.get("load") == capacity and p.get("counted") == "pass":
            return (p.get("stats") or {}).get("server")
    return None


def _mean_tokens(steps: pd.DataFrame) -> float | None:
    ok = steps["ok_rps"].to_numpy(dtype=float)
    tokens = steps["tokens_per_s"].to_numpy(dtype=float)
    keep = ok > 0
    return float(np.mean(tokens[keep] / ok[keep])) if keep.any() else None


def _slo_text(slo: dict) -> str:
    parts = []
    if slo.get("ttft_p95_ms") is not None:
        parts.append(f"TTFT p95 ≤ {slo['ttft_p95_ms']:g} ms")
    if slo.get("e2e_p95_ms") is not None:
        parts.append(f"E2E p95 ≤ {slo['e2e_p95_ms']:g} ms")
    if slo.get("error_rate") is not None:
        parts.append(f"error rate ≤ {slo['error_rate']:.2%}")
    if slo.get("goodput") is not None:
        parts.append(f"goodput ≥ {slo['goodput']:.0%}")
    return ", ".join(parts) + " (judged with 95% intervals)"


def _ttft_block(stats: dict) -> dict:
    key = "ttft_response_ms" if stats.get("response_time") else "ttft_ms"
    return stats.get(key) or stats.get("ttft_ms") or {}


def _num(value, default: float = np.nan) -> float:
    return float(value) if isinstance(value, int | float) else default


# -- tables --------------------------------------------------------------------------------------


def result_rows(doc: dict) -> Table:
    unit = doc.get("unit") or ""
    header = ["target", "status", f"capacity ({unit})", "bracket", "probes", "confirmed"]
    rows = []
    for name, t in doc["targets"].items():
        b = t.get("bracket") or {}
        rows.append(
            [
                name,
                str(t.get("status")),
                fmt(t.get("capacity"), 2) if t.get("capacity") is not None else "–",
                f"[{fmt(b.get('low'), 2)}, {fmt(b.get('high'), 2)})",
                fmt(len(t.get("probes") or [])),
                fmt(bool(t.get("confirmed"))),
            ]
        )
    return header, rows


def probe_rows(doc: dict, name: str) -> Table:
    header = [
        "#",
        "role",
        "load",
        "s",
        "achieved req/s",
        "TTFT p95 ms [95% CI]",
        "E2E p95 ms",
        "errors",
        "verdict",
        "counted",
        "health",
    ]
    rows = []
    for i, p in enumerate(doc["targets"][name].get("probes") or []):
        st = p.get("stats") or {}
        check = next((c for c in p.get("checks") or [] if c["metric"] == "ttft_ms.p95"), None)
        p95 = (
            f"{fmt(check['value'])} [{fmt(check['low'])}, {fmt(check['high'])}]"
            if check
            else fmt(_ttft_block(st).get("p95"))
        )
        health = p.get("health") or {}
        rows.append(
            [
                str(i + 1),
                p.get("role", ""),
                f"{p['load']:g}",
                f"{p['seconds']:g}",
                fmt(st.get("achieved_rps"), 2),
                p95,
                fmt((st.get("e2e_ms") or {}).get("p95")),
                f"{st['error_rate']:.2%}" if isinstance(st.get("error_rate"), float) else "–",
                p["verdict"],
                p.get("counted") or "not counted",
                "DEGRADED" if health.get("degraded") else "ok",
            ]
        )
    return header, rows


def scaling_rows(doc: dict) -> Table | None:
    scaling = doc.get("scaling")
    if not scaling:
        return None
    header = [
        "relay workers",
        f"capacity ({doc.get('unit')})",
        "status",
        "efficiency",
        "busy processes per core",
        "cores set the limit",
    ]
    rows = [
        [
            str(r["workers"]),
            fmt(r["capacity"], 2)
            if r["capacity"] is not None
            else (f"≥ {r['at_least']:g}" if r.get("at_least") is not None else "–"),
            str(r["status"]),
            f"{r['efficiency']:.0%}" if r["efficiency"] is not None else "–",
            fmt(r["processes_per_core"], 2),
            fmt(r["core_bound"]),
        ]
        for r in scaling["rows"]
    ]
    return header, rows


# -- charts --------------------------------------------------------------------------------------


def draw_charts(doc: dict, out: Path) -> dict[str, Path]:
    names = [n for n, t in doc["targets"].items() if t.get("probes")]
    if not names:
        return {}
    return {
        "path": _path_chart(doc, names, out / CHARTS["path"]),
        "latency": _latency_chart(doc, names, out / CHARTS["latency"]),
    }


def _color(p: dict) -> str:
    """Green/red as counted; orange for an inconclusive probe that was repeated; grey else."""
    return VERDICT_COLORS.get(p.get("counted") or p["verdict"], "#7f7f7f")


def _bracket(ax, t: dict, horizontal: bool) -> None:
    b = t.get("bracket") or {}
    if b.get("low") is not None and b.get("high") is not None:
        span = ax.axhspan if horizontal else ax.axvspan
        span(b["low"], b["high"], color="#1f77b4", alpha=0.12, label="final bracket")
    if t.get("capacity") is not None:
        line = ax.axhline if horizontal else ax.axvline
        line(t["capacity"], color="#1f77b4", ls="--", lw=1.2, label=f"capacity {t['capacity']:g}")


def _path_chart(doc: dict, names: list[str], path: Path) -> Path:
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        t = doc["targets"][name]
        probes = t["probes"]
        x = np.arange(1, len(probes) + 1)
        y = np.array([p["load"] for p in probes], dtype=float)
        ax.plot(x, y, color="#999", lw=1, zorder=1)
        for xi, p in zip(x, probes, strict=True):
            big = p.get("role") == "confirm"
            ax.scatter(
                xi,
                p["load"],
                s=90 if big else 36,
                color=_color(p),
                zorder=3,
                marker="D" if big else "o",
                edgecolor="k",
                linewidth=0.4,
            )
        _bracket(ax, t, horizontal=True)
        if y.size and y.max() / max(y.min(), 1e-9) > 8:
            ax.set_yscale("log", base=2)
        ax.set_xlabel("probe")
        ax.set_ylabel(f"load ({doc.get('unit')})")
        ax.set_xticks(x)
        ax.grid(alpha=0.3)
        ax.set_title(f"{name}: {t.get('status')}")
        _legend(ax)
    fig.suptitle("The probe path")
    fig.tight_layout()
    return _save(fig, path)


def _latency_chart(doc: dict, names: list[str], path: Path) -> Path:
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 4.2), squeeze=False)
    palette = colors(names)
    for ax, name in zip(axes[0], names, strict=True):
        t = doc["targets"][name]
        limit = (t.get("slo") or {}).get("ttft_p95_ms")
        pts = []
        for p in t["probes"]:
            check = next((c for c in p.get("checks") or [] if c["metric"] == "ttft_ms.p95"), None)
            value = check["value"] if check else _ttft_block(p.get("stats") or {}).get("p95")
            if value is None:
                continue
            low = check["low"] if check else value
            high = check["high"] if check else value
            pts.append((p["load"], value, value - low, high - value, _color(p)))
        for load, value, down, up, color in pts:
            ax.errorbar(
                load,
                value,
                yerr=[[down], [up]],
                fmt="o",
                color=color,
                ms=5,
                ecolor=color,
                capsize=3,
                zorder=3,
            )
        if pts:
            order = sorted(pts)
            ax.plot(
                [q[0] for q in order],
                [q[1] for q in order],
                color=palette[name],
                lw=0.8,
                alpha=0.6,
                zorder=2,
            )
        if limit:
            ax.axhline(limit, color="#d62728", lw=1.2, label=f"SLO p95 {limit:,.0f} ms")
        _bracket(ax, t, horizontal=False)
        values = [q[1] for q in pts] + ([limit] if limit else [])
        if values and min(values) > 0 and max(values) / min(values) > 10:
            ax.set_yscale("log")
        ax.set_xlabel(f"load ({doc.get('unit')})")
        ax.set_ylabel("TTFT p95 (ms)")
        ax.grid(alpha=0.3, which="both")
        ax.set_title(name)
        _legend(ax)
    fig.suptitle("Latency versus load, with the SLO line and the bracket")
    fig.tight_layout()
    return _save(fig, path)


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:  # nothing labelled (no bracket, no SLO line): none
        ax.legend(fontsize=7, loc="upper left")


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=90, bbox_inches="tight", pil_kwargs={"compress_level": 3})
    plt.close(fig)
    return path


# -- the report ----------------------------------------------------------------------------------


def write_search_report(out: Path, doc: dict) -> dict[str, dict | None]:
    """report.md, report.html and the charts of a search folder; returns each target's plan."""
    out = Path(out)
    plans = {name: search_plan(doc, name) for name in doc["targets"]}
    charts = draw_charts(doc, out)
    (out / "report.md").write_text(search_markdown(doc, plans, charts))
    (out / "report.html").write_text(search_html(doc, plans, charts, out))
    return plans


def _headlines(doc: dict) -> list[str]:
    lines = []
    for name, t in doc["targets"].items():
        lines.append(f"`{name}`: {t.get('message') or t.get('status')}")
        if t.get("hint"):
            lines.append(f"`{name}` — what would lift it: {t['hint']}")
    lines += [f"warning: {w}" for w in doc.get("warnings") or []]
    for name, t in doc["targets"].items():
        for i, p in enumerate(t.get("probes") or []):
            lines += [f"`{name}` probe {i + 1}: {w}" for w in p.get("warnings") or []]
    if doc.get("interrupted"):
        lines.append("The search was interrupted (Ctrl-C): the probes above are all it measured.")
    return lines


def _settings_lines(doc: dict) -> list[tuple[str, str]]:
    s = doc.get("settings") or {}
    lines = [
        ("command", f"`{doc.get('command')}`"),
        ("scenario", f"{doc.get('scenario')} (load axis: {doc.get('axis')}, {doc.get('unit')})"),
        (
            "search",
            f"start {s.get('start')}, precision {s.get('precision')}, max probes "
            f"{s.get('max_probes')}, {s.get('probe_s')} s per probe",
        ),
        ("started", str(doc.get("started_at"))),
        ("machine", f"{doc.get('cpus')} CPUs"),
    ]
    if doc.get("mock"):
        lines.append(("mock", ", ".join(f"{k}={v}" for k, v in doc["mock"].items())))
    return lines


def search_markdown(doc: dict, plans: dict, charts: dict[str, Path]) -> str:
    parts = [f"# relaybench search — {doc.get('scenario')}, {doc.get('started_at')}"]
    parts.append("\n".join(f"- {line}" for line in _headlines(doc)))
    parts += ["## Result", table(*result_rows(doc))]
    for name in doc["targets"]:
        parts += [f"## Probes: {name}", table(*probe_rows(doc, name))]
        reasons = [
            r for p in doc["targets"][name].get("probes") or [] for r in p.get("reasons") or []
        ]
        if reasons:
            parts.append("\n".join(f"- {r}" for r in dict.fromkeys(reasons)))
    scaling = scaling_rows(doc)
    if scaling:
        parts += ["## Relay workers", table(*scaling), doc["scaling"]["verdict"]]
    for name, p in plans.items():
        if p:
            parts += [f"## Capacity plan: {name}", plan_markdown(p)]
    if charts:
        parts.append("## Charts")
        parts += [f"![{key}]({path.name})\n\n{CAPTIONS[key]}" for key, path in charts.items()]
    parts += ["## Search", "\n".join(f"- {k}: {v}" for k, v in _settings_lines(doc))]
    parts.append(
        "Each probe is a run folder under `probes/<target>/`: `relaybench report`, `compare` and "
        "`gate` work on any of them."
    )
    return "\n\n".join(parts) + "\n"


def search_html(doc: dict, plans: dict, charts: dict[str, Path], out: Path) -> str:
    return render(
        "search.html.j2",
        doc=doc,
        folder=str(out),
        headlines=[line.replace("`", "") for line in _headlines(doc)],
        result=result_rows(doc),
        probes={name: probe_rows(doc, name) for name in doc["targets"]},
        scaling=scaling_rows(doc),
        plans={name: plan_tables(p) for name, p in plans.items() if p},
        charts=[(CAPTIONS[k], data_uri(p)) for k, p in charts.items()],
        settings=[(k, v.replace("`", "")) for k, v in _settings_lines(doc)],
    )
