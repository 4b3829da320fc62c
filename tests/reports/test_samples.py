"""The one sample selector: which values feed each metric, and that its users agree on them."""

import numpy as np
import pytest

from reports.folder import load_folder
from reports.gate import open_run
from reports.records import load_records
from reports.samples import SELECTORS, ok, select, steady
from reports.stats import stats
from reports.summary import build_summary

from .helpers import T0, record, write_records

S = 1_000_000_000


def hand_run(tmp_path):
    write_records(
        tmp_path,
        [
            record(seq=0, chunks_ms=[100.0, 110.0, 130.0], lags_ms=[0.5, 0.2, 0.7]),
            # failed after one chunk: no timing counts, its lag does
            record(
                seq=1,
                ok=False,
                error="truncated",
                ttft_ms=90.0,
                e2e_ms=95.0,
                chunks_ms=[90.0],
                lags_ms=[0.9],
            ),
            # ok without content: no TTFT (null), still an e2e
            record(seq=2, ttft_ms=None, e2e_ms=40.0, chunks_ms=[], lags_ms=None),
            record(
                seq=3,
                ttft_ms=200.0,
                e2e_ms=260.0,
                chunks_ms=[200.0, 260.0],
                lags_ms=[0.3, 0.4],
                intended_ns=T0 + 3 * S - 2_000_000,
            ),
        ],
    )
    return load_records(tmp_path)


def test_each_rule(tmp_path):
    recs = hand_run(tmp_path)
    rows = recs.frame

    def values(metric):
        return select(recs, rows, metric).values.tolist()

    assert values("ttft_ms") == [100.0, 200.0]  # ok only, nulls dropped
    assert values("e2e_ms") == [130.0, 40.0, 260.0]
    assert values("itl_ms") == [10.0, 20.0, 60.0]  # gaps never cross from one request to the next
    assert select(recs, rows, "itl_ms").rows.tolist() == [0, 0, 3]
    assert values("first_token_lag_ms") == [0.5, 0.9, 0.3]  # failed records' lags count
    assert values("chunk_lag_ms") == [0.5, 0.2, 0.7, 0.9, 0.3, 0.4]
    assert select(recs, rows, "chunk_lag_ms").rows.tolist() == [0, 0, 0, 1, 3, 3]
    near = {"abs": 1e-3}  # Unix ns as float64 resolve to 256 ns
    assert values("schedule_lag_ms") == pytest.approx([2.0], **near)
    assert values("ttft_response_ms") == pytest.approx([202.0], **near)
    assert values("e2e_response_ms") == pytest.approx([262.0], **near)
    assert values("tokens_per_s") == pytest.approx([3 / 0.13, 3 / 0.04, 3 / 0.26])
    assert select(recs, rows, "ttft_ms").rows is None


def test_steady_window_and_subsets(tmp_path):
    recs = hand_run(tmp_path)
    later = steady(recs.frame, 2.0)  # records sent 2 s or more after the first
    assert later["seq"].tolist() == [2, 3]
    assert select(recs, later, "chunk_lag_ms").values.tolist() == [0.3, 0.4]
    assert select(recs, ok(recs.frame), "first_token_lag_ms").values.tolist() == [0.5, 0.3]
    assert len(steady(recs.frame.iloc[:0], 1.0)) == 0


def test_unknown_metric_names_the_known_ones(tmp_path):
    recs = hand_run(tmp_path)
    with pytest.raises(ValueError, match=r"no sample selector for 'nope'.*ttft_ms"):
        select(recs, recs.frame, "nope")


def test_summary_and_gate_see_the_same_samples(tmp_path, step_run):
    summary = build_summary(step_run)
    folder = load_folder(step_run)
    run = open_run(step_run)
    for name, entry in summary["targets"].items():
        rows = folder.frame[folder.frame["target"] == name]
        for metric in ("ttft_ms", "e2e_ms", "itl_ms", "first_token_lag_ms", "chunk_lag_ms"):
            if entry.get(metric) is None:
                continue
            assert stats(select(folder.records, rows, metric).values) == entry[metric]
            assert stats(run.sample(name, metric).values) == entry[metric], (name, metric)
        assert entry["error_rate"] == round(1 - entry["ok"] / entry["requests"], 6)
    assert set(SELECTORS) >= {"ttft_ms", "itl_ms", "e2e_ms", "chunk_lag_ms"}
    assert np.isfinite(run.sample("relay", "tokens_per_s").values).all()
