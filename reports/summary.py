"""summary.json, built from a run folder's raw records alone (schema_version 1).

Its schema is typed in ``relaybench.records`` (``Summary``, ``TargetSummary``, ``Stats``); which
values feed each STATS block is ``reports.samples``'s rule, in short:

- ``interrupted``: the records the run's stop cut off (error ``interrupted``: in flight at
  Ctrl-C or when the run's window closed). They measure the stop, not the target, so they are
  counted there and in no other field, and a note says how many; ``server`` and the window
  still include them (the server did that work, in that time).
- ``requests`` every other record; ``ok`` records with ``ok: true``; ``errors`` counts ``error``
  over the failed records (a failed record without a type counts as ``unknown``).
- ``ttft_ms``, ``e2e_ms`` and ``itl_ms`` come from successful records only (a failure's timings
  measure the failure, not the service). ITL is every consecutive difference of ``chunks_ms``.
- ``first_token_lag_ms`` (first element of ``lags_ms``) and ``chunk_lag_ms`` (every element)
  come from every record that carries stamps; null when the target's upstream sends none.
- ``output_tokens`` sums those records (tokens delivered, even by a stream that broke later);
  ``output_tokens_per_s`` and ``requests_per_s`` divide by the target's measured window
  (run.json ``started_ns``..``ended_ns``, else first send to last end in the records).

Extra fields: ``error_rate``, ``error_causes`` (the top causes of failures, ``reports.causes``),
``duration_s``, ``stream``, ``kind``, ``headers_ms``,
``usage_mismatches`` (complete streams whose usage count differs from their content chunks), and for
open-loop targets the coordinated-omission pair — ``ttft_ms``/``e2e_ms`` are service times (from
the actual send), ``ttft_response_ms``/``e2e_response_ms`` response times (from the intended
start) — plus ``schedule_lag_ms``. Top-level ``overhead`` holds each relay target's added
latency versus ``direct`` with 95% bootstrap intervals, ``calibration`` (when run.json carries one)
each target's lag against the harness floor (``reports.calibration``), ``notes`` any skipped input.
With a client retry policy, ``retry_amplification``, ``user_error_rate`` and the other attempt
counts of ``reports.traffic``.
With server samples (``server/``, ``reports.server``), ``server``: per server, its CPU (peak,
mean, seconds, per request, per 1,000 chunks), RSS and fds over the target's window, and the
leak watch's verdicts; failed scrapes are added to ``notes``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from relaybench.records import SCHEMA_VERSION, UNKNOWN, Stats, Summary, TargetSummary
from reports import calibration, samples
from reports import server as server_view
from reports.causes import error_causes
from reports.folder import RunFolder, load_folder, target_window_ns
from reports.health import check_health
from reports.samples import select
from reports.stats import bootstrap_diff, stats
from reports.traffic import retry_fields

OVERHEAD_METRICS = ("first_token_lag_ms", "chunk_lag_ms", "ttft_ms")


def build_summary(run_dir: Path) -> Summary:
    return summarize(load_folder(Path(run_dir)))


def write_summary(run_dir: Path) -> Summary:
    summary = build_summary(run_dir)
    save_summary(Path(run_dir), summary)
    return summary


def save_summary(run_dir: Path, summary: Summary) -> None:
    path = Path(run_dir) / "summary.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    tmp.replace(path)


def summarize(folder: RunFolder) -> Summary:
    groups = folder.groups()
    targets = {name: target_summary(folder, name, rows) for name, rows in groups.items()}
    summary: Summary = {
        "schema_version": SCHEMA_VERSION,
        "run": run_block(folder, targets),
        "targets": targets,
        "health": check_health(folder),
        "overhead": overhead(folder.target_names(), groups, folder),
    }
    versus_floor = calibration.compare(folder.meta, targets)
    if versus_floor is not None:
        summary["calibration"] = versus_floor
    notes = [*folder.notes, *interrupted_notes(targets), *server_view.notes(folder)]
    if notes:
        summary["notes"] = notes
    return summary


def run_block(folder: RunFolder, targets: dict) -> dict:
    meta = folder.meta
    duration = meta.get("duration_s")
    if not isinstance(duration, int | float):
        duration = max((t["duration_s"] for t in targets.values()), default=0.0)
    started = meta.get("started_at")
    if not isinstance(started, str):
        first = int(folder.frame["start_ns"].min())
        started = pd.Timestamp(first, unit="ns", tz="UTC").isoformat()
    block = {
        "scenario": str(meta.get("scenario") or "unknown"),
        "started_at": started,
        "duration_s": float(duration),
        "command": str(meta.get("command") or ""),
    }
    for key in ("ended_at", "interrupted", "users", "seed"):
        if key in meta:
            block[key] = meta[key]
    return block


def interrupted_notes(targets: dict[str, TargetSummary]) -> list[str]:
    return [
        f"{name}: {t['interrupted']} request(s) in flight when the run stopped are counted as "
        "interrupted, not in requests, ok, errors, error_rate or any latency"
        for name, t in targets.items()
        if t["interrupted"]
    ]


def target_summary(folder: RunFolder, name: str, every: pd.DataFrame) -> TargetSummary:
    def of(metric: str) -> Stats:
        return stats(select(folder.records, rows, metric).values)

    rows = samples.counted(every)
    ok_mask = rows["ok"].to_numpy(dtype=bool)
    errors = rows[~ok_mask]["error"].fillna(UNKNOWN).value_counts()
    started, ended = target_window_ns(folder, name, every)
    seconds = (ended - started) / 1e9
    tokens = int(rows["output_tokens"].sum())
    meta = folder.target_meta(name)
    first_lags = of("first_token_lag_ms")
    out: TargetSummary = {
        "requests": len(rows),
        "ok": int(ok_mask.sum()),
        "errors": {str(k): int(v) for k, v in sorted(errors.items())},
        "ttft_ms": of("ttft_ms"),
        "itl_ms": of("itl_ms"),
        "e2e_ms": of("e2e_ms"),
        "output_tokens": tokens,
        "output_tokens_per_s": round(tokens / seconds, 3),
        "requests_per_s": round(len(rows) / seconds, 3),
        "first_token_lag_ms": first_lags if first_lags["count"] else None,
        "chunk_lag_ms": of("chunk_lag_ms") if first_lags["count"] else None,
        "error_rate": round(1 - ok_mask.mean(), 6) if len(rows) else None,
        "duration_s": round(seconds, 3),
        "stream": bool(meta.get("stream", every["stream"].all())),
        "kind": meta.get("kind"),
        "headers_ms": of("headers_ms"),
        "usage_mismatches": usage_mismatches(samples.ok(rows)),
        "error_causes": error_causes(rows),
        "interrupted": len(every) - len(rows),
    }
    server = server_view.target_block(folder, name, every)
    if server:
        out["server"] = server
    if rows["intended_ns"].notna().any():
        out["schedule_lag_ms"] = of("schedule_lag_ms")
        out["ttft_response_ms"] = of("ttft_response_ms")
        out["e2e_response_ms"] = of("e2e_response_ms")
    out.update(retry_fields(folder.records, rows))
    return out


def usage_mismatches(rows: pd.DataFrame) -> int:
    """Complete streams whose ``usage.completion_tokens`` differs from the content chunks seen.

    Zero when the upstream sends one token per chunk (the mock's default) and nothing was lost
    or duplicated on the way; non-streaming answers arrive as one chunk, so they are not counted.
    """
    streamed = rows[rows["stream"].to_numpy(dtype=bool) & rows["usage_tokens"].notna().to_numpy()]
    return int((streamed["usage_tokens"] != streamed["content_chunks"]).sum())


def is_relay(name: str, meta: dict) -> bool:
    kind = meta.get("kind")
    return kind == "relay" if kind else name.startswith("relay")


def overhead(names: list[str], groups: dict[str, pd.DataFrame], folder: RunFolder) -> dict:
    """Each relay target's added latency versus ``direct``: difference of medians, 95% CI.

    First-token lag and TTFT are one value per request (independent units, bootstrapped
    directly). Chunk lag pools every chunk; chunks of one request are correlated, so its
    interval comes from a cluster bootstrap that resamples whole requests.
    """
    direct = groups.get("direct")
    if direct is None:
        return {}
    base = {metric: select(folder.records, direct, metric) for metric in OVERHEAD_METRICS}
    out: dict = {}
    for seed, name in enumerate(names):
        if name == "direct" or not is_relay(name, folder.target_meta(name)):
            continue
        rows = groups[name]
        block = {}
        for metric in OVERHEAD_METRICS:
            a, b = base[metric], select(folder.records, rows, metric)
            if a.values.size and b.values.size:
                block[f"added_{metric}_p50"] = bootstrap_diff(
                    a.values, b.values, 50, seed=seed, groups_a=a.rows, groups_b=b.rows
                )
        block["stream"] = bool(folder.target_meta(name).get("stream", rows["stream"].all()))
        out[name] = block
    return out
