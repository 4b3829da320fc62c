"""Which values feed a metric: the one sample selector of summary, gate, compare, charts, benches.

``select(records, rows, metric)`` returns the values behind a metric for some records (``rows``:
a slice of ``Records.frame`` / ``RunFolder.frame``, e.g. one target's, with its ``row`` column)
and, for pooled per-chunk metrics, the record (row) of each value — the cluster a bootstrap
must resample whole. NaNs are dropped: a percentile is of measured values only.

The rules (``SELECTORS``), over the ``counted`` records only: a record the run's stop cut off
(error ``interrupted``: in flight at Ctrl-C or when the run's window closed) measures the stop,
not the target, and feeds no sample (``summary.json`` counts it apart, as ``interrupted``).

- ``ttft_ms``, ``e2e_ms``, ``headers_ms``: successful records only (a failure's timings measure
  the failure, not the service), one value per request. For a non-streaming target ``ttft_ms``
  is the whole answer (the builder records it so): streaming and buffered are the same column.
- ``itl_ms``: successful records, every consecutive difference of ``chunks_ms`` (per chunk gap).
- ``first_token_lag_ms`` (first element of ``lags_ms``) and ``chunk_lag_ms`` (every element):
  every record with emission stamps, failed ones too (a lag is measured per chunk that arrived).
- ``schedule_lag_ms``: every open-loop record, ``start_ns - intended_ns``.
- ``ttft_response_ms``, ``e2e_response_ms``: successful open-loop records, the service time plus
  the schedule lag (response time from the intended start: coordinated omission corrected).
- ``tokens_per_s``: successful records with a positive ``e2e_ms``, output tokens per second.

``steady(rows, warmup_s)`` is the window filter: the records sent ``warmup_s`` or later after
the first send. A new metric is one function added to ``SELECTORS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from relaybench.records import INTERRUPTED
from reports.records import Records


@dataclass(frozen=True)
class Sample:
    """A metric's values and, for per-chunk metrics, the record row of each value (else None)."""

    values: np.ndarray
    rows: np.ndarray | None = None


def interrupted(rows: pd.DataFrame) -> np.ndarray:
    """Which of ``rows`` the run's stop cut off (error ``interrupted``), as a boolean mask."""
    return rows["error"].isin([INTERRUPTED]).to_numpy(dtype=bool)


def counted(rows: pd.DataFrame) -> pd.DataFrame:
    """The records that measure the target: all but those the run's stop cut off."""
    cut = interrupted(rows)
    return rows[~cut] if cut.any() else rows


def ok(rows: pd.DataFrame) -> pd.DataFrame:
    """The successful records."""
    return rows[rows["ok"].to_numpy(dtype=bool)]


def steady(rows: pd.DataFrame, warmup_s: float) -> pd.DataFrame:
    """The records sent at least ``warmup_s`` after the first one (per call: slice per target)."""
    if not len(rows):
        return rows
    starts = rows["start_ns"].to_numpy(dtype=np.int64)
    return rows[starts >= starts.min() + int(warmup_s * 1e9)]


def schedule_lag_ms(rows: pd.DataFrame) -> np.ndarray:
    """``start_ns - intended_ns`` in ms, row by row (NaN where no intended time)."""
    intended = rows["intended_ns"].to_numpy(dtype=np.float64)
    return (rows["start_ns"].to_numpy(dtype=np.float64) - intended) / 1e6


def _column(name: str) -> Callable[[Records, pd.DataFrame], Sample]:
    def select_column(records: Records, rows: pd.DataFrame) -> Sample:
        return Sample(ok(rows)[name].to_numpy(dtype=np.float64))

    return select_column


def _itl(records: Records, rows: pd.DataFrame) -> Sample:
    return Sample(*records.lists("chunks_ms").diffs_with_rows(ok(rows)["row"]))


def _first_lag(records: Records, rows: pd.DataFrame) -> Sample:
    return Sample(records.lists("lags_ms").firsts(rows["row"]))


def _chunk_lag(records: Records, rows: pd.DataFrame) -> Sample:
    return Sample(*records.lists("lags_ms").select_with_rows(rows["row"]))


def _schedule_lag(records: Records, rows: pd.DataFrame) -> Sample:
    return Sample(schedule_lag_ms(rows))


def _response(name: str) -> Callable[[Records, pd.DataFrame], Sample]:
    def select_response(records: Records, rows: pd.DataFrame) -> Sample:
        done = ok(rows)
        return Sample(done[name].to_numpy(dtype=np.float64) + schedule_lag_ms(done))

    return select_response


def _tokens_per_s(records: Records, rows: pd.DataFrame) -> Sample:
    done = ok(rows)
    e2e = done["e2e_ms"].to_numpy(dtype=np.float64)
    timed = e2e > 0
    return Sample(done["output_tokens"].to_numpy(np.float64)[timed] / (e2e[timed] / 1000))


SELECTORS: dict[str, Callable[[Records, pd.DataFrame], Sample]] = {
    "ttft_ms": _column("ttft_ms"),
    "e2e_ms": _column("e2e_ms"),
    "headers_ms": _column("headers_ms"),
    "itl_ms": _itl,
    "first_token_lag_ms": _first_lag,
    "chunk_lag_ms": _chunk_lag,
    "schedule_lag_ms": _schedule_lag,
    "ttft_response_ms": _response("ttft_ms"),
    "e2e_response_ms": _response("e2e_ms"),
    "tokens_per_s": _tokens_per_s,
}


def select(records: Records, rows: pd.DataFrame, metric: str) -> Sample:
    """The values behind ``metric`` for ``rows`` (NaNs dropped); ValueError for an unknown one."""
    try:
        selector = SELECTORS[metric]
    except KeyError:
        known = ", ".join(SELECTORS)
        raise ValueError(f"no sample selector for {metric!r} (known: {known})") from None
    sample = selector(records, counted(rows))
    keep = ~np.isnan(sample.values)
    if keep.all():
        return sample
    return Sample(sample.values[keep], None if sample.rows is None else sample.rows[keep])
