"""The 1-second time series and the per-step table, both vectorised groupbys over the records.

Time is seconds since the target's own start (targets run one after another, so a shared axis
"seconds into the target" lets them be overlaid). A request belongs to the second it was sent.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reports import server as server_view
from reports.folder import RunFolder, target_window_ns
from reports.samples import select
from reports.significance import bootstrap_statistic


def _seconds(folder: RunFolder, name: str, rows: pd.DataFrame) -> np.ndarray:
    started, _ = target_window_ns(folder, name, rows)
    return ((rows["start_ns"].to_numpy(dtype=np.int64) - started) // 1_000_000_000).astype(int)


def per_second(folder: RunFolder) -> pd.DataFrame:
    """One row per (target, second): users, requests, ok, errors, TTFT p50/p95 of that second.

    ``users`` comes from the load-generator samples (``loadgen/``: each process's last sample
    in that second, summed over processes) when there are any, else from the records: the
    largest ``users`` each process reported for records sent in that second, summed.
    With server samples, ``METRIC:SERVER`` columns follow (``reports.server.per_second``).
    """
    frames = []
    for name, rows in folder.frame.groupby("target", sort=False):
        second = _seconds(folder, name, rows)
        work = pd.DataFrame(
            {
                "second": second,
                "worker": rows["worker"].to_numpy(),
                "users": rows["users"].to_numpy(dtype=np.float64),
                "ok": rows["ok"].to_numpy(dtype=bool),
                "ttft": np.where(rows["ok"].to_numpy(dtype=bool), rows["ttft_ms"], np.nan),
                "tokens": rows["output_tokens"].to_numpy(dtype=np.float64),
            }
        )
        grouped = work.groupby("second")
        out = pd.DataFrame(
            {
                "requests": grouped.size(),
                "ok": grouped["ok"].sum(),
                "tokens": grouped["tokens"].sum(),
                "ttft_p50": grouped["ttft"].quantile(0.5),
                "ttft_p95": grouped["ttft"].quantile(0.95),
            }
        )
        out["errors"] = out["requests"] - out["ok"]
        out["users"] = work.groupby(["second", "worker"])["users"].max().groupby("second").sum()
        sampled = _sampled_users(folder, name, rows)
        last = max(int(second.max()) if second.size else -1, int(sampled.index.max()) if len(
            sampled) else -1)  # fmt: skip
        full = pd.RangeIndex(0, last + 1, name="second")
        out = out.reindex(full)
        if len(sampled):  # the samples, and the records where no sample landed (the first s)
            out["users"] = sampled.reindex(full).combine_first(out["users"])
        for col in ("requests", "ok", "errors", "tokens"):
            out[col] = out[col].fillna(0)
        out["users"] = out["users"].ffill()
        out = out.join(server_view.per_second(folder, name, rows, out.index))
        out.insert(0, "target", name)
        frames.append(out.reset_index())
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _sampled_users(folder: RunFolder, name: str, rows: pd.DataFrame) -> pd.Series:
    samples = folder.loadgen
    if not len(samples) or "users" not in samples:
        return pd.Series(dtype=float)
    samples = samples[(samples["target"] == name) & samples["users"].notna()]
    if not len(samples):
        return pd.Series(dtype=float)
    started, ended = target_window_ns(folder, name, rows)
    samples = samples[(samples["t_ns"] >= started) & (samples["t_ns"] <= ended)]
    second = ((samples["t_ns"].to_numpy(dtype=np.int64) - started) // 1_000_000_000).astype(int)
    frame = pd.DataFrame(
        {"second": second, "worker": samples["worker"].to_numpy(), "users": samples["users"]}
    )
    return frame.groupby(["second", "worker"])["users"].last().groupby("second").sum()


def errors_per_second(folder: RunFolder) -> pd.DataFrame:
    """Failed requests per (target, second, error type)."""
    failed = folder.frame[~folder.frame["ok"].to_numpy(dtype=bool)]
    frames = []
    for name, rows in failed.groupby("target", sort=False):
        all_rows = folder.frame[folder.frame["target"].to_numpy() == name]
        started, _ = target_window_ns(folder, name, all_rows)
        second = (rows["start_ns"].to_numpy(dtype=np.int64) - started) // 1_000_000_000
        counts = (
            pd.DataFrame({"second": second, "error": rows["error"].fillna("unknown").to_numpy()})
            .groupby(["second", "error"])
            .size()
            .rename("count")
            .reset_index()
        )
        counts.insert(0, "target", name)
        frames.append(counts)
    if not frames:
        return pd.DataFrame(columns=["target", "second", "error", "count"])
    return pd.concat(frames, ignore_index=True)


def is_step_run(folder: RunFolder) -> bool:
    steps = folder.frame["step"]
    return bool(steps.notna().any() and steps.nunique() > 1)


def per_step(folder: RunFolder, with_ci: bool = True) -> pd.DataFrame:
    """One row per (target, step): load, throughput and latency, for ``step`` or sweep runs.

    ``seconds`` is the planned step length (``scenario_params`` ``duration_s / steps`` of a
    ``step`` run), else the step's span (first to last send, plus one mean gap);
    ``ttft_p95_low``/``_high`` bound the p95 with a 95% bootstrap interval (the uncertainty a
    capacity estimate carries).
    """
    frame = folder.frame[folder.frame["step"].notna()]
    planned = planned_step_seconds(folder)
    rows_out = []
    for (name, step), rows in frame.groupby(["target", "step"], sort=True):
        ok = rows["ok"].to_numpy(dtype=bool)
        starts = rows["start_ns"].to_numpy(dtype=np.int64)
        span = (starts.max() - starts.min()) / 1e9
        gap = span / max(len(rows) - 1, 1)
        seconds = planned or (span + gap if span > 0 else 1.0)
        ttft = select(folder.records, rows, "ttft_ms").values
        e2e = select(folder.records, rows, "e2e_ms").values
        row = {
            "target": name,
            "step": int(step),
            "users": float(rows.groupby("worker")["users"].max().sum()),
            "rate": float(np.nanmean(rows["rate"].to_numpy(dtype=np.float64)))
            if rows["rate"].notna().any()
            else np.nan,
            "requests": len(rows),
            "ok": int(ok.sum()),
            "error_rate": float(1 - ok.mean()),
            "seconds": seconds,
            "rps": len(rows) / seconds,
            "ok_rps": ok.sum() / seconds,
            "tokens_per_s": float(rows["output_tokens"].sum()) / seconds,
            "e2e_mean_ms": float(e2e.mean()) if e2e.size else np.nan,
            "ttft_p50": _pct(ttft, 50),
            "ttft_p95": _pct(ttft, 95),
            "ttft_p99": _pct(ttft, 99),
        }
        if with_ci and ttft.size >= 2:
            rng = np.random.default_rng(int(step))
            _, replicates = bootstrap_statistic(ttft, 95, 2000, rng)
            row["ttft_p95_low"], row["ttft_p95_high"] = np.percentile(replicates, [2.5, 97.5])
        else:
            row["ttft_p95_low"] = row["ttft_p95_high"] = row["ttft_p95"]
        rows_out.append(row)
    return pd.DataFrame(rows_out)


def planned_step_seconds(folder: RunFolder) -> float | None:
    params = folder.meta.get("scenario_params") or {}
    duration, steps = params.get("duration_s"), params.get("steps")
    if folder.meta.get("scenario") != "step":
        return None
    if isinstance(duration, int | float) and isinstance(steps, int) and steps > 0 and duration > 0:
        return float(duration) / steps
    return None


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if values.size else np.nan
