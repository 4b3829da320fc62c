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
