"""Reading ``server/*.jsonl`` back, for the reports.

A torn last line (a killed run) or a corrupt one is skipped and counted, never fatal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

KINDS = ("metrics", "stats", "process", "redis")


@dataclass
class SourceSamples:
    """One source's lines: ``rows`` are samples, ``gaps`` the failed polls, in time order."""

    name: str
    server: str
    kind: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0

    def between(self, started_ns: int, ended_ns: int) -> SourceSamples:
        keep = [r for r in self.rows if started_ns <= r["time_ns"] <= ended_ns]
        gaps = [g for g in self.gaps if started_ns <= g["time_ns"] <= ended_ns]
        return SourceSamples(self.name, self.server, self.kind, keep, gaps, self.skipped)

    def series(self, group: str, key: str, field_: str | None = None) -> tuple[np.ndarray, ...]:
        """``(time_ns, values)`` of one series: ``group`` is gauges, rates or quantiles
        (``field_`` then picks p50/p95/p99); samples without it are left out."""
        times, values = [], []
        for row in self.rows:
            value = (row.get(group) or {}).get(key)
            if field_ is not None:
                value = value.get(field_) if isinstance(value, dict) else None
            if isinstance(value, int | float) and not isinstance(value, bool):
                times.append(row["time_ns"])
                values.append(float(value))
        return np.array(times, dtype=np.int64), np.array(values, dtype=np.float64)


def split_name(stem: str) -> tuple[str, str]:
    server, _, kind = stem.rpartition(".")
    return (server, kind) if server and kind in KINDS else (stem, "metrics")


def read_source(path: Path) -> SourceSamples:
    server, kind = split_name(path.stem)
    out = SourceSamples(path.stem, server, kind)
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            out.skipped += 1
            continue
        if not isinstance(row, dict) or not isinstance(row.get("time_ns"), int):
            out.skipped += 1
        elif "gap" in row:
            out.gaps.append(row)
        else:
            out.rows.append(row)
    return out


def load(run_dir: Path) -> dict[str, SourceSamples]:
    """Every ``server/*.jsonl`` of a run folder, by source name (empty when none)."""
    folder = Path(run_dir) / "server"
    if not folder.is_dir():
        return {}
    return {p.stem: read_source(p) for p in sorted(folder.glob("*.jsonl"))}


def status(run_dir: Path) -> dict[str, Any]:
    """``server/sources.json`` (what was scraped, counts, first errors), or ``{}``."""
    path = Path(run_dir) / "server" / "sources.json"
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
