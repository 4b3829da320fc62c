"""What trace replay, chat sessions and client retries add to a report.

Summary fields (``retry_fields``), only for runs with a retry policy (their records carry the
per-attempt lists):

- ``attempts`` — attempts sent in all; ``retry_amplification`` — attempts / user requests (1.0:
  nothing retried); ``attempts_per_request`` — how many user requests took 1, 2, … attempts;
  ``retried`` / ``recovered`` — user requests that needed a retry / of those, that ended ok.
- ``user_error_rate`` — failed user requests / user requests (what the user saw; the same as
  ``error_rate``, since a record is a user request) next to ``attempt_error_rate`` — failed
  attempts / attempts (what the server saw). Every attempt but a request's last failed: the
  policy only retries failures.

Tables over time and by turn (``arrivals_per_bin``, ``by_turn``, ``amplification_per_bin``) feed
the report's charts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reports.records import Records

BIN_S = 10.0


def retry_fields(records: Records, rows: pd.DataFrame) -> dict:
    ids = rows["row"].to_numpy(dtype=np.int64)
    if not len(ids) or not (records.lists("attempt_start_ms").lengths[ids] > 0).any():
        return {}
    attempts = rows["attempts"].fillna(1).to_numpy(dtype=np.int64)
    ok = rows["ok"].to_numpy(dtype=bool)
    total = int(attempts.sum())
    failed_users = int((~ok).sum())
    values, counts = np.unique(attempts, return_counts=True)
    return {
        "attempts": total,
        "retry_amplification": round(total / len(ids), 6),
        "attempts_per_request": {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)},
        "retried": int((attempts > 1).sum()),
        "recovered": int(((attempts > 1) & ok).sum()),
        "user_error_rate": round(failed_users / len(ids), 6),
        "attempt_error_rate": round((int((attempts - 1).sum()) + failed_users) / total, 6),
    }


def arrivals_per_bin(rows: pd.DataFrame, t0_ns: int, bin_s: float = BIN_S) -> pd.DataFrame:
    """Open loop: per ``bin_s`` from ``t0_ns``, the arrivals asked (intended start in the bin)
    and achieved (actual send in the bin), in requests per second."""
    intended = rows["intended_ns"].dropna().to_numpy(dtype=np.int64)
    sent = rows.loc[rows["intended_ns"].notna(), "start_ns"].to_numpy(dtype=np.int64)
    if not len(intended):
        return pd.DataFrame(columns=["t_s", "asked_per_s", "achieved_per_s"])
    end = max(intended.max(), sent.max()) - t0_ns
    bins = max(1, int(np.ceil((end / 1e9 + 1e-9) / bin_s)))
    edges = t0_ns + (np.arange(bins + 1) * bin_s * 1e9).astype(np.int64)
    asked, _ = np.histogram(intended, bins=edges)
    achieved, _ = np.histogram(sent, bins=edges)
    return pd.DataFrame(
        {
            "t_s": np.arange(bins) * bin_s,
            "asked_per_s": asked / bin_s,
            "achieved_per_s": achieved / bin_s,
        }
    )


def by_turn(rows: pd.DataFrame) -> pd.DataFrame:
    """Chat: per turn index, the requests, TTFT and E2E medians and p95 (successful requests)
    and the median prompt size in tokens."""
    turns = rows[rows["turn"].notna()]
    if not len(turns):
        return pd.DataFrame()
    done = turns[turns["ok"].astype(bool)]
    g = done.groupby(done["turn"].astype(int))
    out = pd.DataFrame(
        {
            "ttft_p50_ms": g["ttft_ms"].median(),
            "ttft_p95_ms": g["ttft_ms"].quantile(0.95),
            "e2e_p50_ms": g["e2e_ms"].median(),
            "e2e_p95_ms": g["e2e_ms"].quantile(0.95),
        }
    )
    every = turns.groupby(turns["turn"].astype(int))
    out["requests"] = every.size()
    out["prompt_tokens_p50"] = every["prompt_tokens"].median()
    return out.reset_index(names="turn").fillna(np.nan)


def amplification_per_bin(
    records: Records, rows: pd.DataFrame, t0_ns: int, bin_s: float = BIN_S
) -> pd.DataFrame:
    """Retry runs: per ``bin_s``, user requests started, attempts sent and their ratio."""
    starts = records.lists("attempt_start_ms")
    ids = rows["row"].to_numpy(dtype=np.int64)
    values, owners = starts.select_with_rows(ids)
    if not len(values):
        return pd.DataFrame(columns=["t_s", "requests", "attempts", "amplification"])
    first = pd.Series(rows["start_ns"].to_numpy(dtype=np.int64), index=ids)
    attempt_ns = first.loc[owners].to_numpy() + (values * 1e6).astype(np.int64)
    end = attempt_ns.max() - t0_ns
    bins = max(1, int(np.ceil((end / 1e9 + 1e-9) / bin_s)))
    edges = t0_ns + (np.arange(bins + 1) * bin_s * 1e9).astype(np.int64)
    requests, _ = np.histogram(first.to_numpy(), bins=edges)
    attempts, _ = np.histogram(attempt_ns, bins=edges)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(requests > 0, attempts / np.maximum(requests, 1), np.nan)
    return pd.DataFrame(
        {"t_s": np.arange(bins) * bin_s, "requests": requests, "attempts": attempts,
         "amplification": ratio}
    )  # fmt: skip


# -- charts ------------------------------------------------------------------------------------

FILES = {
    "arrivals": "arrivals_asked_vs_achieved.png",
    "turns": "latency_by_turn.png",
    "amplification": "retry_amplification.png",
}
CAPTIONS = {
    "arrivals": "Arrivals per second in 10-second bins (1 s for runs under a minute): asked by "
    "the trace schedule (intended sends) and achieved (actual sends). Where the coloured line "
    "falls below the gray one the load generator could not keep up (more --users or --processes).",
    "turns": "Per turn of a chat session (successful requests): TTFT and E2E medians, and the "
    "prompt's median size, which grows as each turn resends the conversation so far.",
    "amplification": "Attempts sent per user request started, in 10-second bins (1 s for runs "
    "under a minute): 1 is no retries; a rise at the peak is the retry policy multiplying the "
    "load (a retry storm).",
}
TITLES = {
    "arrivals": "Trace replay: arrivals asked vs achieved",
    "turns": "Chat sessions: latency and prompt size by turn",
    "amplification": "Client retries: attempts per user request over time",
}


def chart_plan(folder, groups: dict[str, pd.DataFrame]) -> dict:
    """The charts of this module the run supports: key -> function of the output path."""
    from reports.folder import target_window_ns

    def t0(name: str) -> int:
        return target_window_ns(folder, name, groups[name])[0]

    live = {n: rows for n, rows in groups.items() if len(rows)}
    out = {}
    traced = {n: r for n, r in live.items() if r["trace_row"].notna().any()}
    if traced:
        tables = {n: arrivals_per_bin(r, t0(n), bin_s(r)) for n, r in traced.items()}
        out["arrivals"] = lambda p: draw_arrivals(tables, p)
    chats = {n: by_turn(r) for n, r in live.items() if r["turn"].notna().any()}
    if chats:
        out["turns"] = lambda p: draw_turns(chats, p)
    retried = {n: r for n, r in live.items() if retry_fields(folder.records, r)}
    if retried:
        tables_a = {
            n: amplification_per_bin(folder.records, r, t0(n), bin_s(r)) for n, r in retried.items()
        }
        out["amplification"] = lambda p: draw_amplification(tables_a, p)
    return out


def bin_s(rows: pd.DataFrame) -> float:
    """10-second bins, or 1-second bins for runs shorter than a minute."""
    starts = rows["start_ns"].to_numpy(dtype=np.int64)
    return BIN_S if len(starts) and np.ptp(starts) > 60e9 else 1.0


def _edges(t: pd.DataFrame) -> np.ndarray:
    width = float(t["t_s"].iloc[1] - t["t_s"].iloc[0]) if len(t) > 1 else BIN_S
    return np.append(t["t_s"].to_numpy(dtype=float), float(t["t_s"].iloc[-1]) + width)


def _figure(rows: int):
    import matplotlib.pyplot as plt

    return plt.subplots(rows, 1, figsize=(9, 2.6 * rows + 0.6), squeeze=False)


def draw_arrivals(tables: dict[str, pd.DataFrame], path):
    from reports.charts import _save, colors

    palette = colors(list(tables))
    fig, axes = _figure(len(tables))
    for ax, (name, t) in zip(axes[:, 0], tables.items(), strict=True):
        edges = _edges(t)
        ax.stairs(t["asked_per_s"], edges, color="gray", lw=2, label="asked (schedule)")
        ax.stairs(t["achieved_per_s"], edges, color=palette[name], label="achieved")
        ax.set_ylabel("arrivals/s")
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=8, loc="upper right")
        ax.grid(alpha=0.3)
    axes[-1][0].set_xlabel("seconds since the target's start")
    fig.suptitle(TITLES["arrivals"])
    fig.tight_layout()
    return _save(fig, path)


def draw_turns(tables: dict[str, pd.DataFrame], path):
    from reports.charts import _save, colors

    palette = colors(list(tables))
    fig, axes = _figure(2)
    lat, size = axes[0][0], axes[1][0]
    for name, t in tables.items():
        c = palette[name]
        lat.plot(t["turn"], t["ttft_p50_ms"], "o-", color=c, label=f"{name} TTFT p50")
        lat.plot(t["turn"], t["e2e_p50_ms"], "s--", color=c, label=f"{name} E2E p50")
        size.plot(t["turn"], t["prompt_tokens_p50"], "o-", color=c, label=name)
    lat.set_ylabel("ms")
    lat.legend(fontsize=8)
    size.set_ylabel("prompt tokens (p50)")
    size.set_xlabel("turn (0 = a session's first request)")
    size.legend(fontsize=8)
    for ax in (lat, size):
        ax.grid(alpha=0.3)
    fig.suptitle(TITLES["turns"])
    fig.tight_layout()
    return _save(fig, path)


def draw_amplification(tables: dict[str, pd.DataFrame], path):
    from reports.charts import _save, colors

    palette = colors(list(tables))
    fig, axes = _figure(1)
    ax = axes[0][0]
    for name, t in tables.items():
        ax.stairs(t["amplification"], _edges(t), color=palette[name], label=name)
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_ylabel("attempts / user requests")
    ax.set_xlabel("seconds since the target's start (user requests by their first attempt)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.suptitle(TITLES["amplification"])
    fig.tight_layout()
    return _save(fig, path)
