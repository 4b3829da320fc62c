"""The server view in reports: what ``server/*.jsonl`` says about each target's window.

- ``target_block``: ``summary.json`` ``targets.NAME.server`` — per server, its CPU, CPU per
  request and per 1,000 chunks, RSS and fds (``relaybench.scrape.usage``) plus the leak watch's
  verdicts (``reports.leaks``) when the scenario held its load;
- ``leak_reasons``: the health sentences for flagged series;
- ``notes``: sources that failed (unreachable, not Prometheus, a process that exited), for
  the report's input notes;
- ``per_second``: the timeline's server columns, ``METRIC:SERVER`` (``cpu_pct:relay``), on
  the same "seconds into the target" axis as the client columns.

Chunks for the per-1,000 figure are the content chunks clients received; a buffered target
receives one answer, so its output tokens stand in (one upstream chunk per token from the mock).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from relaybench.scrape import samples
from relaybench.scrape.samples import SourceSamples
from relaybench.scrape.usage import server_block
from reports import leaks
from reports.folder import RunFolder, target_window_ns

S = 1_000_000_000

# timeline columns: (metric, source kind, group, key, field, scale); a key ending in "{" sums
# every labelled series of that family
COLUMNS = [
    ("cpu_pct", "process", "gauges", "cpu_pct", None, 1.0),
    ("rss_mb", "process", "gauges", "rss_mb", None, 1.0),
    ("cpu_pct", "metrics", "rates", "process_cpu_seconds_total", None, 100.0),
    ("rss_mb", "metrics", "gauges", "process_resident_memory_bytes", None, 1 / 2**20),
    ("active_streams", "metrics", "gauges", "relay_active_streams", None, 1.0),
    ("pool_busy", "metrics", "gauges", 'relay_upstream_pool_connections{state="busy"}', None, 1.0),
    ("pool_idle", "metrics", "gauges", 'relay_upstream_pool_connections{state="idle"}', None, 1.0),
    (
        "upstream_ttfb_p95_ms",
        "metrics",
        "quantiles",
        "relay_upstream_first_byte_seconds",
        "p95",
        1000.0,
    ),
    (
        "upstream_ttfb_mean_ms",
        "metrics",
        "quantiles",
        "relay_upstream_first_byte_seconds",
        "mean",
        1000.0,
    ),
    ("rate_limited_per_s", "metrics", "rates", "relay_rate_limited_total", None, 1.0),
    ("queued", "stats", "gauges", "queued", None, 1.0),
    ("active_streams", "stats", "gauges", "active_streams", None, 1.0),
    ("lateness_p99_ms", "stats", "gauges", "lateness_p99_ms", None, 1.0),
    ("ping_ms", "redis", "gauges", "ping_ms", None, 1.0),
]


@functools.lru_cache(maxsize=4)
def _load(path: str, stamp: tuple) -> dict[str, SourceSamples]:
    return samples.load(Path(path))


def sources(folder: RunFolder) -> dict[str, SourceSamples]:
    """The folder's server samples, read once per state of its ``server/`` files."""
    directory = Path(folder.path) / "server"
    if not directory.is_dir():
        return {}
    stamp = tuple((p.name, p.stat().st_size) for p in sorted(directory.glob("*.jsonl")))
    return _load(str(folder.path), stamp)


def _chunks(rows: pd.DataFrame) -> int:
    stream = rows["stream"].to_numpy(dtype=bool)
    chunks = rows["content_chunks"].to_numpy(dtype=np.float64)
    tokens = rows["output_tokens"].to_numpy(dtype=np.float64)
    return int(np.nansum(np.where(stream, chunks, tokens)))


def held_load(folder: RunFolder) -> bool:
    return folder.meta.get("scenario") in leaks.HELD_LOAD_SCENARIOS


def _leaks(folder: RunFolder, started: int, ended: int) -> dict[str, dict[str, Any]]:
    if not held_load(folder):
        return {}
    out = {}
    for src in sources(folder).values():
        if src.kind != "process":
            continue
        inside = src.between(started, ended)
        verdicts = leaks.check({k: inside.series("gauges", k) for k in leaks.SERIES})
        if verdicts:
            out[src.server] = verdicts
    return out


def target_block(folder: RunFolder, name: str, rows: pd.DataFrame) -> dict[str, Any] | None:
    found = sources(folder)
    if not found or not len(rows):
        return None
    started, ended = target_window_ns(folder, name, rows)
    block = server_block(found, started, ended, len(rows), _chunks(rows))
    for server, verdicts in _leaks(folder, started, ended).items():
        if server in block:
            block[server]["leak"] = verdicts
    return block or None


def leak_reasons(folder: RunFolder) -> tuple[list[str], list[str]]:
    """(health reasons, what was checked) of the leak watch over every target's window."""
    reasons: list[str] = []
    checked: list[str] = []
    if not sources(folder) or not held_load(folder):
        return reasons, checked
    frame = folder.frame
    for name in folder.target_names():
        rows = frame[frame["target"].to_numpy() == name]
        if not len(rows):
            continue
        started, ended = target_window_ns(folder, name, rows)
        for server, verdicts in _leaks(folder, started, ended).items():
            checked.append(f"{server} during {name}")
            for key, verdict in verdicts.items():
                if verdict["leak"]:
                    reasons.append(leaks.describe(server, name, key, verdict))
    return reasons, [f"leak watch: RSS and fds ({', '.join(checked)})"] if checked else []


def notes(folder: RunFolder) -> list[str]:
    """One sentence per scraped source that failed or never answered, for the input notes."""
    out = []
    found = sources(folder)
    for src in samples.status(folder.path).get("sources") or []:
        if not isinstance(src, dict):
            continue
        what = f"server samples {src.get('name')} ({src.get('address')})"
        counts = f"{src.get('samples', 0)} samples, {src.get('gaps', 0)} gaps"
        if not (src.get("first_error") or src.get("ended")):
            written = found.get(str(src.get("name")))
            if src.get("samples") or (written and (written.rows or written.gaps)):
                continue  # it answered (a killed run leaves the start's zero counts behind)
            out.append(f"{what}: never answered: no poll finished during the run ({counts}).")
        elif src.get("ended"):
            out.append(f"{what}: {src['ended']}; not sampled after that ({counts}).")
        elif not src.get("samples"):
            out.append(f"{what}: never answered usably: {src['first_error']} ({counts}).")
        else:
            out.append(f"{what}: some polls failed, first: {src['first_error']} ({counts}).")
    for src in found.values():
        if src.skipped:
            out.append(f"server samples {src.name}: {src.skipped} unreadable lines skipped.")
    return out


def per_second(folder: RunFolder, name: str, rows: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
    """The target's server columns per second (``METRIC:SERVER``), mean of that second's samples."""
    found = sources(folder)
    columns: dict[str, pd.Series] = {}
    if not found:
        return pd.DataFrame(index=index)
    started, ended = target_window_ns(folder, name, rows)
    last = started + (int(index.max()) + 1) * S if len(index) else ended
    for src in sorted(found.values(), key=lambda s: s.kind != "process"):  # PIDs first
        inside = src.between(started, max(ended, last))
        for metric, kind, group, key, field_, scale in COLUMNS:
            column = f"{metric}:{src.server}"
            if src.kind != kind or column in columns:
                continue
            times, values = inside.series(group, key, field_)
            if not times.size:
                continue
            second = (times - started) // S
            columns[column] = pd.Series(values * scale).groupby(second).mean()
    return pd.DataFrame(columns).reindex(index)
