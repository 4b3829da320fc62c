"""Trace files: parsed into arrays, then cut, compressed and rate-scaled into an absolute schedule.

A trace is a list of arrivals, each with an input and an output length in tokens. Three formats
are recognised from the content (never from the file name):

- ``azure``    — the Azure LLM inference trace CSV: ``TIMESTAMP,ContextTokens,GeneratedTokens``,
  timestamps like ``2023-11-16 18:15:46.6805900`` (UTC).
- ``mooncake`` — Mooncake-style JSONL: one object a line with ``timestamp`` (milliseconds),
  ``input_length`` and ``output_length`` (other keys, such as ``hash_ids``, are ignored).
- ``generic``  — CSV with a header, or JSONL: ``t_s`` (seconds, any origin) or ``time`` (ISO 8601,
  with or without an offset), ``input_tokens``, ``output_tokens``, optional ``session`` (rows with
  the same session are turns of one conversation). What a user produces from an access log.

Time zero of a trace is its first arrival. Rows whose token counts are not whole numbers in
``1..MAX_INPUT_TOKENS`` / ``1..MAX_OUTPUT_TOKENS`` are skipped and counted in the notes;
unsorted timestamps are sorted (stable) with a note. Anything unreadable is a ``UsageError``
naming the file, the line and the field.

``build_schedule`` turns a trace into what the load generator sends: offsets in seconds from the
run's time zero. ``start_s``/``window_s`` cut the trace (trace seconds), ``speedup`` divides time,
``rate_scale`` K multiplies the number of arrivals while keeping the shape: for K > 1 each extra
arrival copies a real row drawn at random and is placed uniformly within that row's smaller gap
to a neighbour, either side (so it lands where the trace is dense, never inside a lull); for
K < 1 a seeded random subset of ``round(K * n)`` rows is kept. The same seed gives the same
schedule on every target and every process.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np
import orjson

from relaybench.errors import UsageError

MAX_INPUT_TOKENS = 200_000  # ~800 kB of prompt: under the mock's 1 MiB body limit
MAX_OUTPUT_TOKENS = 100_000  # the mock's own cap
DEFAULT_TRACE = "AzureLLMInferenceTrace_conv.csv"

AZURE = ("timestamp", "contexttokens", "generatedtokens")
MOONCAKE = ("timestamp", "input_length", "output_length")
EXPECTED = (
    "expected an Azure trace CSV (TIMESTAMP,ContextTokens,GeneratedTokens), Mooncake JSONL "
    "(timestamp,input_length,output_length) or generic CSV/JSONL "
    "(t_s or time,input_tokens,output_tokens[,session])"
)


@dataclass(frozen=True, eq=False)
class Trace:
    """A parsed trace, sorted by arrival. Arrays all have one entry per usable row."""

    path: str
    format: str
    t_s: np.ndarray  # float64 seconds from the first arrival, ascending
    input_tokens: np.ndarray  # int64
    output_tokens: np.ndarray  # int64
    row: np.ndarray  # int64: 0-based index of the data row in the file (the "trace row")
    session: np.ndarray | None  # object array of str ("" = no session), or None
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.t_s)

    @property
    def duration_s(self) -> float:
        return float(self.t_s[-1])


@dataclass(frozen=True, eq=False)
class Schedule:
    """Arrivals to send: ``offset_s`` from the run's time zero, ascending, with their rows."""

    offset_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    row: np.ndarray
    session: np.ndarray | None
    span_s: float  # how long the schedule lasts (the cut window divided by the speedup)
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.offset_s)

    def share(self, index: int, count: int) -> Schedule:
        """The part load-generator process ``index`` of ``count`` sends.

        Rows without a session are dealt round-robin in time order; every row of a session goes
        to the process its name hashes to, so one process holds the whole conversation. The
        shares of ``0..count-1`` partition the schedule exactly.
        """
        if not 0 <= index < count:
            raise ValueError(f"process index {index} not in 0..{count - 1}")
        n = len(self)
        if self.session is None:
            mine = np.arange(n) % count == index
        else:
            has = self.session != ""
            rank = np.cumsum(~has) - 1
            owner = np.array([zlib.crc32(s.encode()) % count for s in self.session], dtype=np.int64)
            mine = np.where(has, owner == index, rank % count == index)
        return self._take(np.flatnonzero(mine))

    def per_bin(self, width_s: float) -> np.ndarray:
        """Arrivals per ``width_s`` bin over the span: the asked rate curve."""
        bins = max(1, math.ceil(self.span_s / width_s))
        counts, _ = np.histogram(self.offset_s, bins=bins, range=(0.0, bins * width_s))
        return counts

    def _take(self, idx: np.ndarray) -> Schedule:
        return replace(
            self,
            offset_s=self.offset_s[idx],
            input_tokens=self.input_tokens[idx],
            output_tokens=self.output_tokens[idx],
            row=self.row[idx],
            session=None if self.session is None else self.session[idx],
        )


def default_path() -> Path:
    """The shipped one-hour Azure conversation trace (CC-BY 4.0, see ``data/README.md``)."""
    return Path(str(resources.files("relaybench.traffic").joinpath("data", DEFAULT_TRACE)))


def load(path: str | Path) -> Trace:
    """Parse a trace file in any known format (detected from its content)."""
    name = str(path)
    text = _read_text(Path(path), name)
    first = next(line for line in text.splitlines() if line.strip())
    if first.lstrip().startswith("{"):
        return _parse_jsonl(text, name)
    return _parse_csv(text, name)


def _read_text(path: Path, name: str) -> str:
    if not path.exists():
        raise UsageError(f"trace {name}: no such file")
    if path.is_dir():
        raise UsageError(f"trace {name}: is a directory, not a trace file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"trace {name}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"trace {name}: not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise UsageError(f"trace {name}: empty file")
    return text


# -- CSV ----------------------------------------------------------------------------------------


def _parse_csv(text: str, name: str) -> Trace:
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    header_line = 0
    lines: list[int] = []
    rows: list[list[str]] = []
    try:
        for fields in reader:
            if not fields or all(not f.strip() for f in fields):
                continue
            if header is None:
                header, header_line = [f.strip().lower() for f in fields], reader.line_num
                continue
            if len(fields) != len(header):
                raise UsageError(
                    f"trace {name}: line {reader.line_num}: expected {len(header)} fields "
                    f"({','.join(header)}), got {len(fields)}"
                )
            lines.append(reader.line_num)
            rows.append(fields)
    except csv.Error as exc:
        raise UsageError(f"trace {name}: line {reader.line_num}: not CSV: {exc}") from None
    assert header is not None
    cols = {h: i for i, h in enumerate(header)}
    if all(h in cols for h in AZURE):
        fmt, tcol, icol, ocol, scol = "azure", "timestamp", "contexttokens", "generatedtokens", None
    elif "input_tokens" in cols and "output_tokens" in cols and ("t_s" in cols or "time" in cols):
        fmt, icol, ocol = "generic", "input_tokens", "output_tokens"
        tcol = "t_s" if "t_s" in cols else "time"
        scol = "session" if "session" in cols else None
    else:
        raise UsageError(
            f"trace {name}: line {header_line}: no known format (header "
            f"{','.join(header)}); {EXPECTED}"
        )
    if not rows:
        raise UsageError(f"trace {name}: no data rows after the header")
    columns = list(zip(*rows, strict=True))
    line_arr = np.array(lines, dtype=np.int64)

    def column(key: str) -> Sequence[str]:
        return columns[cols[key]]

    if tcol == "t_s":
        t = _floats(column(tcol), line_arr, name, "t_s")
    else:
        t = _times(column(tcol), line_arr, name, tcol if fmt == "generic" else "TIMESTAMP")
    labels = ("ContextTokens", "GeneratedTokens") if fmt == "azure" else (icol, ocol)
    inp = _floats(column(icol), line_arr, name, labels[0], finite=False)
    out = _floats(column(ocol), line_arr, name, labels[1], finite=False)
    session = None
    if scol is not None:
        session = np.array([s.strip() for s in column(scol)], dtype=object)
    return _finish(name, fmt, t, inp, out, line_arr, session, labels)


def _floats(
    values: Sequence[str], lines: np.ndarray, name: str, field: str, *, finite: bool = True
) -> np.ndarray:
    """Numbers from text; the first one that is not a number (or not finite) is an error."""
    try:
        arr = np.array(values, dtype=np.float64)
    except ValueError:
        arr = None
    bad = None
    if arr is None:
        for i, v in enumerate(values):
            try:
                float(v)
            except ValueError:
                bad = i
                break
    elif finite and not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
    if bad is not None:
        raise UsageError(
            f"trace {name}: line {lines[bad]}: {field}: {str(values[bad]).strip()!r} is not a "
            "number"
        )
    assert arr is not None
    return arr


def _times(values: Sequence[str], lines: np.ndarray, name: str, field: str) -> np.ndarray:
    """ISO 8601 times (offsets honoured) as seconds from the earliest."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy warns that it converts offsets to UTC: we want that
        try:
            stamps = np.array([v.strip() for v in values], dtype="datetime64[ns]")
            bad = np.flatnonzero(np.isnat(stamps))
            first_bad = int(bad[0]) if len(bad) else None
        except ValueError:
            first_bad = next(i for i, v in enumerate(values) if not _is_time(v))
    if first_bad is not None:
        raise UsageError(
            f"trace {name}: line {lines[first_bad]}: {field}: {values[first_bad].strip()!r} is "
            "not an ISO 8601 time"
        )
    ns = stamps.astype(np.int64)
    return (ns - ns.min()).astype(np.float64) / 1e9


def _is_time(value: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return not np.isnat(np.datetime64(value.strip(), "ns"))
        except ValueError:
            return False


# -- JSONL --------------------------------------------------------------------------------------


def _parse_jsonl(text: str, name: str) -> Trace:
    objs: list[dict] = []
    lines: list[int] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise UsageError(f"trace {name}: line {n}: not a JSON object") from None
        if type(obj) is not dict:
            raise UsageError(f"trace {name}: line {n}: not a JSON object")
        objs.append(obj)
        lines.append(n)
    keys = objs[0].keys()
    if all(k in keys for k in MOONCAKE):
        fmt, tkey, ikey, okey = "mooncake", "timestamp", "input_length", "output_length"
    elif "input_tokens" in keys and "output_tokens" in keys and ("t_s" in keys or "time" in keys):
        fmt, ikey, okey = "generic", "input_tokens", "output_tokens"
        tkey = "t_s" if "t_s" in keys else "time"
    else:
        raise UsageError(
            f"trace {name}: line {lines[0]}: no known format (keys {','.join(keys)}); {EXPECTED}"
        )
    line_arr = np.array(lines, dtype=np.int64)

    def field(key: str, *, text_ok: bool = False) -> list:
        out = []
        for obj, n in zip(objs, lines, strict=True):
            if key not in obj:
                raise UsageError(f"trace {name}: line {n}: {key}: missing")
            v = obj[key]
            ok = isinstance(v, str) if text_ok else type(v) in (int, float)
            if not ok:
                kind = "an ISO 8601 string" if text_ok else "a number"
                raise UsageError(f"trace {name}: line {n}: {key}: {v!r} is not {kind}")
            out.append(v)
        return out

    if tkey == "time":
        t = _times(field("time", text_ok=True), line_arr, name, "time")
    else:
        t = np.array(field(tkey), dtype=np.float64)
        if fmt == "mooncake":
            t = t / 1000.0
        if not np.isfinite(t).all():
            bad = int(np.flatnonzero(~np.isfinite(t))[0])
            raise UsageError(f"trace {name}: line {lines[bad]}: {tkey}: not a finite number")
    inp = np.array(field(ikey), dtype=np.float64)
    out = np.array(field(okey), dtype=np.float64)
    session = None
    if fmt == "generic" and any("session" in o for o in objs):
        session = np.array(
            ["" if o.get("session") is None else str(o["session"]) for o in objs], dtype=object
        )
    return _finish(name, fmt, t, inp, out, line_arr, session, (ikey, okey))


# -- shared checks ------------------------------------------------------------------------------


def _finish(
    name: str,
    fmt: str,
    t: np.ndarray,
    inp: np.ndarray,
    out: np.ndarray,
    lines: np.ndarray,
    session: np.ndarray | None,
    labels: tuple[str, str],
) -> Trace:
    notes: list[str] = []
    row = np.arange(len(t), dtype=np.int64)
    good = np.ones(len(t), dtype=bool)
    for values, limit, label in (
        (inp, MAX_INPUT_TOKENS, labels[0]),
        (out, MAX_OUTPUT_TOKENS, labels[1]),
    ):
        with np.errstate(invalid="ignore"):
            ok = (
                np.isfinite(values)
                & (values == np.floor(values))
                & (values >= 1)
                & (values <= limit)
            )
        if not ok.all():
            first = int(np.flatnonzero(~ok)[0])
            notes.append(
                f"{int((~ok).sum())} rows skipped: {label} not a whole number in 1..{limit} "
                f"(first: line {lines[first]}, {label}={values[first]:g})"
            )
        good &= ok
    if not good.any():
        raise UsageError(f"trace {name}: no usable rows: {'; '.join(notes)}")
    t, inp, out, row, lines = t[good], inp[good], out[good], row[good], lines[good]
    if session is not None:
        session = session[good]
    if len(t) > 1 and (np.diff(t) < 0).any():
        order = np.argsort(t, kind="stable")
        moved = int((order != np.arange(len(t))).sum())
        notes.append(f"timestamps not in order: sorted ({moved} rows moved)")
        t, inp, out, row = t[order], inp[order], out[order], row[order]
        if session is not None:
            session = session[order]
    dups = int((np.diff(t) == 0).sum()) if len(t) > 1 else 0
    if dups:
        notes.append(f"{dups} rows share a timestamp with the row before (kept, in file order)")
    return Trace(
        path=name,
        format=fmt,
        t_s=t - t[0],
        input_tokens=inp.astype(np.int64),
        output_tokens=out.astype(np.int64),
        row=row,
        session=session,
        notes=tuple(notes),
    )


# -- the schedule -------------------------------------------------------------------------------


def check_controls(
    *,
    start_s: float = 0.0,
    window_s: float | None = None,
    speedup: float = 1.0,
    rate_scale: float = 1.0,
) -> None:
    """The time controls on their own (before any file is read)."""
    for flag, value in (("--speedup", speedup), ("--rate-scale", rate_scale)):
        if not math.isfinite(value) or value <= 0:
            raise UsageError(f"{flag} {value:g}: must be a number > 0")
    if not math.isfinite(start_s) or start_s < 0:
        raise UsageError(f"--trace-start {start_s:g}: must be >= 0 seconds")
    if window_s is not None and (not math.isfinite(window_s) or window_s <= 0):
        raise UsageError(f"--trace-window {window_s:g}: must be > 0 seconds")


def build_schedule(
    trace: Trace,
    *,
    start_s: float = 0.0,
    window_s: float | None = None,
    speedup: float = 1.0,
    rate_scale: float = 1.0,
    seed: int = 1,
) -> Schedule:
    """The arrivals of ``trace`` from ``start_s`` to ``start_s + window_s`` (trace seconds), time
    divided by ``speedup``, count multiplied by ``rate_scale``; offsets from the run's start."""
    check_controls(start_s=start_s, window_s=window_s, speedup=speedup, rate_scale=rate_scale)
    notes = list(trace.notes)
    duration = trace.duration_s
    if start_s > duration:
        raise UsageError(
            f"trace {trace.path}: --trace-start {start_s:g} s is after the trace's last arrival "
            f"({duration:.1f} s)"
        )
    end = math.inf if window_s is None else start_s + window_s
    if window_s is not None and end > duration:
        notes.append(
            f"window {start_s:g}+{window_s:g} s runs past the trace's last arrival "
            f"({duration:.1f} s): cut there"
        )
    if end > duration:  # to the end, the last arrival included
        sel = np.flatnonzero(trace.t_s >= start_s)
    else:
        sel = np.flatnonzero((trace.t_s >= start_s) & (trace.t_s < end))
    if not len(sel):
        raise UsageError(
            f"trace {trace.path}: no arrivals between {start_s:g} and {end:g} s of the trace"
        )
    span = (min(end, duration) if window_s is not None else duration) - start_s
    t = trace.t_s[sel] - start_s
    src = sel
    rng = np.random.default_rng(seed)
    n = len(sel)
    extra = np.zeros(n, dtype=bool)
    if rate_scale > 1:
        m = round((rate_scale - 1) * n)
        pick = rng.integers(0, n, size=m)
        gaps = np.diff(t)
        before = np.concatenate([[np.inf], gaps])
        after = np.concatenate([gaps, [np.inf]])
        reach = np.minimum(before, after)[pick]
        reach[~np.isfinite(reach)] = 0.0  # a one-row window: copies land on the row itself
        new = np.clip(rng.uniform(t[pick] - reach, t[pick] + reach), 0.0, span)
        t = np.concatenate([t, new])
        src = np.concatenate([sel, sel[pick]])
        extra = np.concatenate([extra, np.ones(m, dtype=bool)])
        order = np.argsort(t, kind="stable")
        t, src, extra = t[order], src[order], extra[order]
    elif rate_scale < 1:
        m = round(rate_scale * n)
        if m == 0:
            raise UsageError(
                f"--rate-scale {rate_scale:g}: keeps none of the {n} arrivals in the window"
            )
        keep = np.sort(rng.choice(n, size=m, replace=False))
        t, src, extra = t[keep], src[keep], extra[keep]
    session = None
    if trace.session is not None:
        session = trace.session[src].copy()
        session[extra] = ""  # a copied turn is not part of its conversation: it is sent alone
    return Schedule(
        offset_s=t / speedup,
        input_tokens=trace.input_tokens[src],
        output_tokens=trace.output_tokens[src],
        row=trace.row[src],
        session=session,
        span_s=span / speedup,
        notes=tuple(notes),
    )
