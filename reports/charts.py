"""The report's charts: one function each, each readable on its own (title, units, legend).

Every function draws with matplotlib's Agg backend (no display), saves one PNG at ``path`` and
returns it. Latency axes are logarithmic when the plotted values span more than a decade.
Distributions are drawn from at most ~2,000 quantile points, so a million records plot as fast
as a thousand.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

DPI = 90
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
ERROR_COLORS = {
    "connect": "#7f7f7f",
    "timeout": "#8c564b",
    "http_429": "#ff7f0e",
    "http_4xx": "#bcbd22",
    "http_5xx": "#d62728",
    "stream_error": "#9467bd",
    "truncated": "#e377c2",
    "malformed": "#17becf",
}


KNOWN_COLORS = {"direct": "#1f77b4", "relay": "#d62728", "relay-buffered": "#2ca02c"}


def colors(names: list[str]) -> dict[str, str]:
    """The same target keeps the same colour in every chart of a report."""
    spare = [c for c in PALETTE if c not in KNOWN_COLORS.values()]
    others = sorted(n for n in names if n not in KNOWN_COLORS)
    out = {n: spare[i % len(spare)] for i, n in enumerate(others)}
    return {n: KNOWN_COLORS.get(n) or out[n] for n in names}


def _save(fig, path: Path) -> Path:
    # zlib level 3: nearly the size of the default 6 at a fraction of the time
    fig.savefig(path, dpi=DPI, bbox_inches="tight", pil_kwargs={"compress_level": 3})
    plt.close(fig)
    return path


def _spans_decades(values: np.ndarray) -> bool:
    values = values[np.isfinite(values) & (values > 0)]
    return values.size > 0 and values.max() / values.min() > 10


def _cdf_points(values: np.ndarray, points: int = 2001) -> tuple[np.ndarray, np.ndarray]:
    qs = np.linspace(0, 100, points)
    return np.percentile(values, qs), qs / 100


def _subsample(values: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return values if values.size <= n else rng.choice(values, n, replace=False)


def _no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_xticks([])
    ax.set_yticks([])


def _legend_outside(ax, **kwargs):
    """A legend right of the plot area, never over the data (the saved PNG grows to fit it)."""
    kwargs.setdefault("fontsize", 8)
    return ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, **kwargs)


# percentile lines: one colour each, none of the target colours' reds/greens or the SLO's red
PERCENTILE_COLORS = {"p50": "#1f77b4", "p95": "#9467bd", "p99": "#8c564b"}


def ttft_cdf(samples: dict[str, np.ndarray], path: Path, title: str = "") -> Path:
    """Cumulative distribution of TTFT per target (successful requests)."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    palette = colors(list(samples))
    everything = np.concatenate([v for v in samples.values() if v.size] or [np.empty(0)])
    drawn = False
    for name, values in samples.items():
        values = values[np.isfinite(values)]
        if not values.size:
            continue
        x, y = _cdf_points(values)
        p50, p95 = np.percentile(values, [50, 95])
        label = f"{name} (p50 {p50:,.0f} ms, p95 {p95:,.0f} ms, n={values.size:,})"
        ax.plot(x, y, color=palette[name], label=label, lw=1.8)
        drawn = True
    if not drawn:
        _no_data(ax, "no successful request: no TTFT to plot")
    else:
        if _spans_decades(everything):
            ax.set_xscale("log")
        for q, va in ((0.5, "bottom"), (0.95, "top"), (0.99, "bottom")):
            ax.axhline(q, color="gray", lw=0.6, ls=":")
            # on the left, where a CDF is still low at p95/p99: not over the curves' ends
            ax.text(0.005, q, f" p{int(q * 100)}", va=va, ha="left", fontsize=8, color="gray",
                    transform=ax.get_yaxis_transform())  # fmt: skip
        ax.set_ylim(0, 1.01)
        _legend_outside(ax)
        ax.grid(alpha=0.3, which="both")
    ax.set_xlabel("time to first token (ms)")
    ax.set_ylabel("fraction of requests")
    ax.set_title(title or "TTFT distribution per target (CDF; further left is faster)")
    return _save(fig, path)


def perceived_latency(streaming: tuple[str, dict], buffered: tuple[str, dict], path: Path) -> Path:
    """What the user waits before seeing anything: streaming TTFT vs the buffered full answer."""
    (s_name, s_stats), (b_name, b_stats) = streaming, buffered
    keys = ["p50", "p95", "p99"]
    s_vals = np.array([s_stats.get(k) or np.nan for k in keys], dtype=float)
    b_vals = np.array([b_stats.get(k) or np.nan for k in keys], dtype=float)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    x = np.arange(len(keys))
    width = 0.38
    ax.bar(x - width / 2, b_vals, width, label=f"{b_name} (buffered: whole answer)", color="#999")
    ax.bar(
        x + width / 2, s_vals, width, label=f"{s_name} (streaming: first token)", color="#1f77b4"
    )
    top = np.nanmax(np.concatenate([s_vals, b_vals, [1.0]]))
    for i in range(len(keys)):
        if np.isfinite(s_vals[i]) and np.isfinite(b_vals[i]) and b_vals[i] > 0:
            change = s_vals[i] / b_vals[i] - 1
            ax.text(
                x[i],
                max(s_vals[i], b_vals[i]) + top * 0.03,
                f"{change:+.0%}",
                ha="center",
                fontsize=13,
                fontweight="bold",
                color="#2ca02c" if change < 0 else "#d62728",
            )
        for dx, v in ((-width / 2, b_vals[i]), (width / 2, s_vals[i])):
            if np.isfinite(v):
                ax.text(x[i] + dx, v / 2, f"{v:,.0f}", ha="center", color="white", fontsize=9)
    ax.set_ylim(0, top * 1.2)
    ax.set_xticks(x, [f"{k}" for k in keys])
    ax.set_ylabel("perceived latency (ms)")
    ax.set_title("Perceived latency: streaming vs buffered (change in % written above)")
    _legend_outside(ax)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


# the timeline's server rows: (label, metrics); a metric's columns are METRIC:SERVER
# (reports.server), one line style per column, the target's colour as above
SERVER_PANELS = [
    ("server CPU %\n(100 = 1 core)", ("cpu_pct",)),
    ("server RSS (MiB)", ("rss_mb",)),
    ("active streams", ("active_streams",)),
    ("upstream pool\nbusy / idle", ("pool_busy", "pool_idle")),
    ("upstream TTFB (ms)\np95 / mean", ("upstream_ttfb_p95_ms", "upstream_ttfb_mean_ms")),
    ("rate-limited/s", ("rate_limited_per_s",)),
    ("mock queue", ("queued",)),
    ("mock lateness p99\n(ms, cumulative)", ("lateness_p99_ms",)),
    ("Redis PING (ms)", ("ping_ms",)),
]
LINE_STYLES = ["-", "--", ":", "-."]


def _server_panels(series: pd.DataFrame) -> list[tuple[str, list[str]]]:
    present = []
    for label, metrics in SERVER_PANELS:
        cols = [c for m in metrics for c in series.columns if c.startswith(f"{m}:")]
        cols = [c for c in cols if series[c].notna().any()]
        if cols:
            present.append((label, cols))
    return present


def peak_timeline(series: pd.DataFrame, path: Path) -> Path:
    """Users, requests/s, TTFT p95 and errors per second on one shared time axis, then the
    servers' rows (``METRIC:SERVER`` columns) when the run scraped them."""
    server_panels = _server_panels(series) if len(series) else []
    rows_n = 4 + len(server_panels)
    fig, axes = plt.subplots(rows_n, 1, figsize=(9, 8 + 1.7 * len(server_panels)), sharex=True)
    names = list(pd.unique(series["target"])) if len(series) else []
    palette = colors(names)
    panels = [
        ("users", "active users", False),
        ("requests", "requests sent/s", False),
        ("ttft_p95", "TTFT p95 (ms)", True),
        ("errors", "errors/s", False),
    ]
    for ax, (label, cols) in zip(axes[4:], server_panels, strict=True):
        for name in names:
            rows = series[series["target"] == name]
            for style, col in zip(LINE_STYLES * len(cols), cols, strict=False):
                known = rows[rows[col].notna()]
                ax.plot(known["second"], known[col], ls=style, color=palette[name], lw=1.3)
        if len(cols) > 1:  # which line style is which series: a grey key
            keys = [
                matplotlib.lines.Line2D([], [], color="#555", ls=style, label=col)
                for style, col in zip(LINE_STYLES * len(cols), cols, strict=False)
            ]
            _legend_outside(ax, handles=keys, fontsize=7)
        else:
            ax.text(0.995, 0.9, cols[0].split(":", 1)[1], transform=ax.transAxes, ha="right",
                    va="top", fontsize=7, color="#555")  # fmt: skip
        values = series[cols].to_numpy(dtype=float)
        if not np.nanmax(np.abs(values)) > 0:  # an all-zero row: 0..1, not -0.05..0.05
            ax.set_ylim(0, 1)
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
    for ax, (col, label, latency) in zip(axes[:4], panels, strict=True):
        for name in names:
            rows = series[series["target"] == name]
            style = {"color": palette[name], "lw": 1.4, "label": name}
            if col == "errors":
                ax.step(rows["second"], rows[col], where="post", **style)
            elif latency:  # seconds with no successful request have no TTFT: bridge them
                known = rows[rows[col].notna()]
                ax.plot(known["second"], known[col], marker="o", ms=2.5, **style)
            else:
                ax.plot(rows["second"], rows[col], **style)
        if latency and len(series) and _spans_decades(series[col].to_numpy(dtype=float)):
            ax.set_yscale("log")
        elif not latency:  # counts: a 0-based axis, never -0.05..0.05 around an all-zero line
            values = series[col].to_numpy(dtype=float) if len(series) else np.empty(0)
            top = np.nanmax(values) if np.isfinite(values).any() else 0.0
            ax.set_ylim(0, top * 1.1 if top > 0 else 1)
            if col == "errors" and top == 0:
                ax.text(0.5, 0.5, "no errors", transform=ax.transAxes, ha="center",
                        va="center", color="gray")  # fmt: skip
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if names:
        _legend_outside(axes[0], title="target")
    axes[-1].set_xlabel("seconds since the target's start")
    what = " and the servers" if server_panels else ""
    fig.suptitle(f"The run over time: load, throughput, TTFT p95, errors{what} (1 s bins)")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / fig.get_figheight()))  # room for the title
    return _save(fig, path)


def latency_vs_load(
    steps: pd.DataFrame,
    path: Path,
    *,
    slo_ms: float | None,
    knees: dict[str, float | None],
    load: str = "users",
) -> Path:
    """TTFT p50/p95/p99 and throughput per step, with the SLO line and the knee marked."""
    names = list(pd.unique(steps["target"]))
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 4.6), squeeze=False)
    unit = "active users" if load == "users" else "asked rate (req/s)"
    for ax, name in zip(axes[0], names, strict=True):
        rows = steps[steps["target"] == name].sort_values(load)
        values = rows[["ttft_p50", "ttft_p95", "ttft_p99"]].to_numpy(dtype=float).ravel()
        log = _spans_decades(np.append(values, slo_ms or np.nan))
        x = rows[load].to_numpy(dtype=float)
        for col, style in (("ttft_p50", "-"), ("ttft_p95", "--"), ("ttft_p99", ":")):
            color = PERCENTILE_COLORS[col.removeprefix("ttft_")]
            ax.plot(x, rows[col], style, marker="o", ms=3, color=color, label=col)
        ax.fill_between(
            x, rows["ttft_p95_low"], rows["ttft_p95_high"], color=PERCENTILE_COLORS["p95"],
            alpha=0.15, label="p95 95% CI",
        )  # fmt: skip
        if slo_ms:
            ax.axhline(slo_ms, color="#d62728", lw=1.2, label=f"SLO p95 {slo_ms:,.0f} ms")
        knee = knees.get(name)
        if knee is not None:
            ax.axvline(knee, color="#ff7f0e", ls="-.", lw=1.2, label=f"knee ≈ {knee:,.0f}")
        if log:
            ax.set_yscale("log")
        ax.set_xlabel(unit)
        ax.set_ylabel("TTFT (ms)")
        ax.grid(alpha=0.3, which="both")
        twin = ax.twinx()
        twin.plot(x, rows["rps"], color="#2ca02c", marker="s", ms=3, lw=1.2, label="req/s")
        twin.set_ylabel("throughput (req/s)", color="#2ca02c")
        twin.set_ylim(0, max(float(rows["rps"].max()) * 1.25, 1))
        handles = ax.get_legend_handles_labels()
        more = twin.get_legend_handles_labels()
        # below the plot, not over it
        ax.legend(handles[0] + more[0], handles[1] + more[1], fontsize=7, loc="upper center",
                  bbox_to_anchor=(0.5, -0.16), ncol=3)  # fmt: skip
        ax.set_title(name)
    fig.suptitle("Latency versus load: where TTFT bends (knee) and where it crosses the SLO")
    fig.tight_layout()
    return _save(fig, path)


def itl_distribution(itl: dict[str, np.ndarray], path: Path) -> Path:
    """Histogram of inter-token latency per streaming target, log-spaced bins."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    samples = {name: v[v > 0] for name, v in itl.items() if np.any(v > 0)}
    if not samples:
        _no_data(ax, "no streamed chunks: no inter-token latency to plot")
    else:
        # uniform bins over log10(ms): numpy's fast O(n) path, even for tens of millions of gaps
        rng = np.random.default_rng(0)
        probe = np.concatenate([_subsample(v, 200_000, rng) for v in samples.values()])
        lo, hi = np.log10(np.percentile(probe, [0.1, 99.9]))
        edges = np.linspace(lo, max(hi, lo + 0.01), 61)
        palette = colors(list(samples))
        for name, values in samples.items():
            p50, p99 = np.percentile(values, [50, 99])
            counts, _ = np.histogram(np.log10(values), bins=edges)
            label = f"{name} (p50 {p50:.1f} ms, p99 {p99:.1f} ms)"
            ax.stairs(counts / values.size, 10**edges, lw=1.6, label=label, color=palette[name])
        ax.set_xscale("log")
        _legend_outside(ax)
        ax.grid(alpha=0.3, which="both")
    ax.set_xlabel("inter-token latency (ms, log scale)")
    ax.set_ylabel("fraction of gaps")
    ax.set_title("Inter-token latency distribution per target (99.9% of gaps shown)")
    return _save(fig, path)


def relay_overhead(overhead: dict, path: Path) -> Path:
    """Added first-token and chunk lag of each relay target versus direct, with 95% CIs."""
    metrics = [
        ("added_first_token_lag_ms_p50", "first-token lag p50"),
        ("added_chunk_lag_ms_p50", "chunk lag p50"),
    ]
    names = [n for n, block in overhead.items() if any(block.get(k) for k, _ in metrics)]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    if not names:
        _no_data(ax, "no relay target with emission stamps measured against direct")
    width = 0.8 / len(metrics)
    palette = ["#1f77b4", "#9467bd"]
    for j, (key, label) in enumerate(metrics):
        xs, vals, lows, highs = [], [], [], []
        for i, name in enumerate(names):
            block = overhead[name].get(key)
            if not block:
                continue
            xs.append(i + (j - 0.5) * width)
            vals.append(block["value"])
            lows.append(block["value"] - block["ci_low"])
            highs.append(block["ci_high"] - block["value"])
        if xs:
            ax.bar(xs, vals, width, yerr=[lows, highs], capsize=4, color=palette[j],
                   label=f"added {label} (95% CI)")  # fmt: skip
            for x, v, up in zip(xs, vals, highs, strict=True):
                ax.text(x, v + up, f"{v:.2f} ms ", ha="center", va="bottom", fontsize=9)
    if names:
        ax.set_xticks(range(len(names)), names)
        ax.axhline(0, color="black", lw=0.8)
        _legend_outside(ax)
        ax.grid(axis="y", alpha=0.3)
    ax.set_ylabel("added latency vs direct (ms)")
    ax.set_title("Relay overhead: lag added on top of the direct path (difference of medians)")
    return _save(fig, path)


def errors_over_time(errors: pd.DataFrame, path: Path) -> Path:
    """Failed requests per second by error type, one panel per target with errors."""
    names = list(pd.unique(errors["target"])) if len(errors) else []
    fig, axes = plt.subplots(
        max(len(names), 1), 1, figsize=(9, 2.4 * max(len(names), 1) + 0.6), squeeze=False
    )
    if not names:
        _no_data(axes[0][0], "no errors in this run")
    for ax, name in zip(axes[:, 0], names, strict=False):
        rows = errors[errors["target"] == name]
        table = rows.pivot_table(index="second", columns="error", values="count", aggfunc="sum")
        table = table.reindex(range(int(table.index.max()) + 1), fill_value=0).fillna(0)
        kinds = list(table.columns)
        ax.stackplot(
            table.index.to_numpy(dtype=float),
            *(table[k].to_numpy(dtype=float) for k in kinds),
            labels=[f"{k} ({int(table[k].sum())})" for k in kinds],
            colors=[ERROR_COLORS.get(k, "#333") for k in kinds],
            step="post",
        )
        ax.set_ylabel("errors/s")
        ax.set_ylim(bottom=0)
        ax.set_title(name, fontsize=10)
        _legend_outside(ax)
        ax.grid(alpha=0.3)
    axes[-1][0].set_xlabel("seconds since the target's start")
    fig.suptitle("Errors by type over time")
    fig.tight_layout()
    return _save(fig, path)


def cdf_overlay(
    pairs: dict[str, tuple[np.ndarray, np.ndarray]], labels: tuple[str, str], path: Path,
    metric: str = "TTFT",
) -> Path:  # fmt: skip
    """Compare: run A (solid) and run B (dashed) CDFs per target."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    palette = colors(list(pairs))
    everything = [v for a, b in pairs.values() for v in (a, b) if v.size]
    for name, (a, b) in pairs.items():
        for values, style, label in ((a, "-", labels[0]), (b, "--", labels[1])):
            if values.size:
                x, y = _cdf_points(values)
                ax.plot(x, y, style, color=palette[name], lw=1.6, label=f"{name} — {label}")
    if everything and _spans_decades(np.concatenate(everything)):
        ax.set_xscale("log")
    if not everything:
        _no_data(ax, f"no {metric} samples in either run")
    else:
        _legend_outside(ax)
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3, which="both")
    ax.set_xlabel(f"{metric} (ms)")
    ax.set_ylabel("fraction of requests")
    ax.set_title(f"{metric} CDF: {labels[0]} (solid) vs {labels[1]} (dashed)")
    return _save(fig, path)
