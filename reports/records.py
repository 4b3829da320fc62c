"""Read a run folder's raw records (``records/*.jsonl``) into one pandas DataFrame.

The happy path is fully vectorised: each file is parsed by pyarrow's JSON reader against an
explicit schema (``relaybench.records.arrow_schema``, derived from the record's definition),
the scalar columns become numpy-backed pandas columns and the two list columns
(``chunks_ms``, ``lags_ms``) stay Arrow lists (``pd.ArrowDtype``), so no per-row Python object is
ever built. ``flat_list`` turns a list column into flat numpy values plus their row positions.

A torn last line (a killed run) or a corrupt line is skipped with a warning, never fatal: only
when pyarrow rejects a file do we fall back to validating that file line by line.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from relaybench.errors import UsageError
from relaybench.records import FIELDS, LIST_FIELDS, arrow_schema, problems

LIST_COLUMNS = LIST_FIELDS
# the list columns ``Records.lists`` flattens into float arrays (a list of strings stays Arrow)
NUMERIC_LISTS = tuple(f.name for f in FIELDS if f.is_list and f.type is not str)
SCHEMA = arrow_schema()  # derived from relaybench.records.Record: the one field list

_PARSE = pajson.ParseOptions(explicit_schema=SCHEMA, unexpected_field_behavior="ignore")
_BLOCK = 1 << 22  # 4 MiB blocks parse in parallel; a block grows to hold any longer line


class RecordWarning(UserWarning):
    """A record line was skipped (torn or corrupt)."""


@dataclass
class FlatList:
    """A list column flattened once: every value, the row it belongs to, each row's length.

    Selecting by row positions is a numpy boolean mask, never a copy of Arrow lists.
    """

    values: np.ndarray
    rows: np.ndarray
    lengths: np.ndarray
    _diffs: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def of(cls, column: pa.ChunkedArray | pa.Array) -> FlatList:
        values, rows, lengths = _flatten(column)
        return cls(values, rows, lengths)

    def _mask(self, row_ids: np.ndarray) -> np.ndarray:
        mask = np.zeros(self.lengths.size, dtype=bool)
        mask[np.asarray(row_ids, dtype=np.int64)] = True
        return mask

    def select(self, row_ids: np.ndarray) -> np.ndarray:
        """Every value of the given rows (positions into the frame)."""
        return self.values[self._mask(row_ids)[self.rows]]

    def select_with_rows(self, row_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``select`` plus the row of each value (the cluster for a request-level bootstrap)."""
        keep = self._mask(row_ids)[self.rows]
        return self.values[keep], self.rows[keep]

    def firsts(self, row_ids: np.ndarray) -> np.ndarray:
        """The first value of each given row that has one."""
        row_ids = np.asarray(row_ids, dtype=np.int64)
        row_ids = row_ids[self.lengths[row_ids] > 0]
        starts = np.cumsum(self.lengths) - self.lengths
        return self.values[starts[row_ids]]

    def diffs(self, row_ids: np.ndarray) -> np.ndarray:
        """Consecutive differences within each given row (ITL from ``chunks_ms``)."""
        return self.diffs_with_rows(row_ids)[0]

    def diffs_with_rows(self, row_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._diffs is None:
            same = self.rows[1:] == self.rows[:-1]
            self._diffs = (np.diff(self.values)[same], self.rows[1:][same])
        values, rows = self._diffs
        keep = self._mask(row_ids)[rows]
        return values[keep], rows[keep]


@dataclass
class Records:
    """All records of a run folder; ``skipped`` lists human notes about lines left out.

    ``frame`` has every field (list columns as Arrow lists) plus ``row``, the position of each
    record. ``scalars`` is the same frame without the list columns — cheap to filter — and
    ``lists`` holds the flattened list columns, addressed by ``row``.
    """

    frame: pd.DataFrame
    skipped: list[str] = field(default_factory=list)
    _lists: dict[str, FlatList] = field(default_factory=dict)
    _arrow: dict[str, pa.ChunkedArray] = field(default_factory=dict)  # not flattened yet
    _scalars: pd.DataFrame | None = None

    @property
    def targets(self) -> list[str]:
        return list(pd.unique(self.frame["target"]))

    @property
    def scalars(self) -> pd.DataFrame:
        if self._scalars is None:
            self._scalars = self.frame.drop(columns=list(LIST_COLUMNS))
        return self._scalars

    def lists(self, name: str) -> FlatList:
        """A numeric list column flattened (once): ``NUMERIC_LISTS`` only."""
        if name not in NUMERIC_LISTS:
            raise ValueError(f"{name} is not a numeric list field (those are {NUMERIC_LISTS})")
        if name not in self._lists:
            column = self._arrow.pop(name, None)
            if column is None:
                column = self.frame[name].array.__arrow_array__()
            self._lists[name] = FlatList.of(column)
        return self._lists[name]

    def flatten_lists(self) -> None:
        """Flatten ``chunks_ms`` and ``lags_ms`` now and drop the list columns from ``frame``.

        For readers that only use ``scalars`` and ``lists`` (the report pipeline): the Arrow
        lists are then freed, a few hundred MiB on a million records. Other numeric lists are
        kept in their compact Arrow form and flattened when first asked for.
        """
        for name in NUMERIC_LISTS:
            if name in ("chunks_ms", "lags_ms"):
                self.lists(name)
            else:
                self._arrow[name] = self.frame[name].array.__arrow_array__()
        self.frame = self.scalars


def record_files(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "records").glob("*.jsonl"))


def load_records(run_dir: Path) -> Records:
    """Pool every ``records/*.jsonl`` file; raise UsageError when there is nothing to read."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} is not a directory")
    files = record_files(run_dir)
    if not files:
        raise UsageError(f"{run_dir} has no records (expected records/*.jsonl)")
    tables: list[pa.Table] = []
    skipped: list[str] = []
    for path in files:
        table, notes = read_file(path)
        skipped += notes
        if table.num_rows:
            tables.append(table)
    for note in skipped:
        warnings.warn(note, RecordWarning, stacklevel=2)
    if not tables:
        raise UsageError(f"{run_dir} has record files but no readable record in them")
    table = pa.concat_tables(tables)
    return Records(frame=table_to_frame(table), skipped=skipped)


def table_to_frame(table: pa.Table) -> pd.DataFrame:
    """Scalar columns as plain pandas columns; list columns kept as Arrow lists (no copies)."""
    if table["target"].null_count or table["start_ns"].null_count:
        table = table.filter(pc.and_(pc.is_valid(table["target"]), pc.is_valid(table["start_ns"])))
    lists = {name: table[name] for name in LIST_COLUMNS}
    frame = table.drop_columns(list(LIST_COLUMNS)).to_pandas()
    for name, column in lists.items():
        frame[name] = pd.Series(pd.arrays.ArrowExtensionArray(column), index=frame.index, name=name)
    frame["row"] = np.arange(len(frame), dtype=np.int64)
    frame["ok"] = frame["ok"].fillna(False).astype(bool)
    frame["stream"] = frame["stream"].fillna(True).astype(bool)
    frame["output_tokens"] = frame["output_tokens"].fillna(0).astype(np.int64)
    return frame


def flat_list(series: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A list column as (values, row position of each value, list length per row).

    Positions index ``series`` by position (0..len-1). Null lists have length 0.
    """
    return _flatten(series.array.__arrow_array__())


def _flatten(arrow: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if isinstance(arrow, pa.ChunkedArray):
        arrow = arrow.combine_chunks() if arrow.num_chunks else pa.array([], arrow.type)
    lengths = pc.list_value_length(arrow).fill_null(0).to_numpy(zero_copy_only=False)
    values = pc.list_flatten(arrow).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    rows = np.repeat(np.arange(len(lengths), dtype=np.int32), lengths)
    return values, rows, lengths.astype(np.int64)


def list_firsts(series: pd.Series) -> np.ndarray:
    """The first element of each non-empty list (e.g. the first-token lag of each request)."""
    values, _, lengths = flat_list(series)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    return values[starts[lengths > 0]]


def list_diffs(series: pd.Series) -> np.ndarray:
    """Consecutive differences within each list (inter-token latencies from ``chunks_ms``)."""
    values, rows, _ = flat_list(series)
    if values.size < 2:
        return np.empty(0)
    same_row = rows[1:] == rows[:-1]
    return np.diff(values)[same_row]


def read_file(path: Path) -> tuple[pa.Table, list[str]]:
    data = path.read_bytes()
    notes: list[str] = []
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        notes.append(f"{path.name}: skipped a torn last line ({len(data) - cut} bytes)")
        data = data[:cut]
    if not data.strip():
        return SCHEMA.empty_table(), notes
    try:
        return _parse(data), notes
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    good, bad = _valid_lines(data)
    if bad:
        shown = ", ".join(map(str, bad[:5])) + (" …" if len(bad) > 5 else "")
        notes.append(f"{path.name}: skipped {len(bad)} corrupt line(s) (line {shown})")
    if not good:
        return SCHEMA.empty_table(), notes
    try:
        return _parse(b"\n".join(good) + b"\n"), notes
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        notes.append(f"{path.name}: unreadable, skipped the whole file ({exc})")
        return SCHEMA.empty_table(), notes


def _parse(data: bytes) -> pa.Table:
    read = pajson.ReadOptions(block_size=max(_BLOCK, len(data) // 64 + 1), use_threads=True)
    return pajson.read_json(io.BytesIO(data), read_options=read, parse_options=_PARSE)


_KEYS = ("target", "start_ns", "ok")  # a line without these cannot be placed or counted


def _valid_lines(data: bytes) -> tuple[list[bytes], list[int]]:
    """The slow path, only for a file pyarrow rejected: keep lines that are sane records."""
    good: list[bytes] = []
    bad: list[int] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            bad.append(number)
            continue
        if isinstance(obj, dict) and _sane(obj):
            good.append(line)
        else:
            bad.append(number)
    return good, bad


def _sane(obj: dict) -> bool:
    """Every value present has its declared type; the key fields are there."""
    return all(obj.get(key) is not None for key in _KEYS) and not problems(obj, complete=False)
