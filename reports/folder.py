"""A run folder loaded once: run.json, the records, the load-generator samples, the mock stats.

Every report stage works from a ``RunFolder`` so a folder is parsed once per command. Only the
records are required; a missing or unreadable ``run.json``, ``loadgen/`` or ``mock_stats/`` is
noted in ``notes`` and the report is built from what is there.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from reports.records import FlatList, Records, load_records


@dataclass
class RunFolder:
    path: Path
    meta: dict
    records: Records
    loadgen: pd.DataFrame
    mock_stats: dict[str, dict]
    notes: list[str] = field(default_factory=list)

    @property
    def frame(self) -> pd.DataFrame:
        """The records' scalar columns (cheap to filter); list columns via ``lists``."""
        return self.records.scalars

    def lists(self, name: str) -> FlatList:
        return self.records.lists(name)

    def target_names(self) -> list[str]:
        """Targets in run.json order (with or without records), then any found only in records."""
        seen = list(self.meta.get("targets") or {})
        return seen + sorted(set(self.records.targets) - set(seen))

    def groups(self) -> dict[str, pd.DataFrame]:
        """Each target's rows of ``frame`` (an empty frame for a target without records)."""
        frame = self.frame
        indices = frame.groupby("target", sort=False).indices
        empty = np.empty(0, dtype=np.int64)
        return {name: frame.iloc[indices.get(name, empty)] for name in self.target_names()}

    def target_meta(self, name: str) -> dict:
        return (self.meta.get("targets") or {}).get(name) or {}


def load_folder(run_dir: Path) -> RunFolder:
    run_dir = Path(run_dir)
    notes: list[str] = []
    records = load_records(run_dir)
    records.flatten_lists()
    notes += records.skipped
    meta = _read_json(run_dir / "run.json", notes)
    silent = sorted(set(meta.get("targets") or {}) - set(records.targets))
    notes += [f"target {name} is in run.json but has no records" for name in silent]
    mock_stats: dict[str, dict] = {}
    for path in sorted((run_dir / "mock_stats").glob("*.json")):
        data = _read_json(path, notes)
        if data:
            mock_stats[path.stem] = data
    return RunFolder(run_dir, meta, records, load_loadgen(run_dir, notes), mock_stats, notes)


_LOADGEN_COLUMNS = ("t_ns", "worker", "cpu_pct", "rss_mb", "users", "target")


def load_loadgen(run_dir: Path, notes: list[str]) -> pd.DataFrame:
    """``loadgen/<target>.<worker>.jsonl`` samples pooled, with a ``target`` column."""
    frames = []
    for path in sorted((run_dir / "loadgen").glob("*.jsonl")):
        try:
            frame = pd.read_json(path, lines=True, dtype=False)
        except ValueError:
            frame = _tolerant_lines(path, notes)
        if frame.empty:
            continue
        frame["target"] = path.name.split(".")[0]
        frames.append(frame)
    if not frames:
        return pd.DataFrame({name: pd.Series(dtype=float) for name in _LOADGEN_COLUMNS})
    frame = pd.concat(frames, ignore_index=True)
    for name in ("t_ns", "cpu_pct", "rss_mb", "users"):
        frame[name] = pd.to_numeric(frame.get(name), errors="coerce")
    return frame.dropna(subset=["t_ns", "cpu_pct"])


def _tolerant_lines(path: Path, notes: list[str]) -> pd.DataFrame:
    rows, bad = [], 0
    for line in path.read_text(errors="replace").splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(obj, dict):
            rows.append(obj)
    if bad:
        notes.append(f"loadgen/{path.name}: skipped {bad} unreadable line(s)")
    return pd.DataFrame(rows)


def _read_json(path: Path, notes: list[str]) -> dict:
    if not path.exists():
        if path.name == "run.json":
            notes.append("run.json is missing: metadata, target windows and SLOs are unknown")
        return {}
    try:
        data = json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        note = f"{path.parent.name}/{path.name} is unreadable ({exc}); ignored"
        notes.append(note)
        warnings.warn(note, stacklevel=2)
        return {}
    return data if isinstance(data, dict) else {}


def target_window_ns(folder: RunFolder, name: str, frame: pd.DataFrame) -> tuple[int, int]:
    """The target's measured window: run.json started/ended, else the records' own span."""
    meta = folder.target_meta(name)
    starts = frame["start_ns"].to_numpy(dtype=np.int64)
    e2e = frame["e2e_ms"].to_numpy(dtype=np.float64)
    ends = starts + np.nan_to_num(e2e, nan=0.0) * 1e6
    first = int(starts.min()) if starts.size else 0
    last = int(ends.max()) if ends.size else 0
    started = meta.get("started_ns")
    ended = meta.get("ended_ns")
    started = int(started) if isinstance(started, int | float) else first
    ended = int(ended) if isinstance(ended, int | float) else last
    if ended <= started:
        ended = max(last, started + 1)
    return started, ended
