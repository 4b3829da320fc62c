import warnings

import numpy as np
import pytest

from relaybench.errors import UsageError
from reports.records import RecordWarning, list_diffs, list_firsts, load_records

from .helpers import record, write_records


def test_list_columns_flatten_to_itl_and_first_lags(tmp_path):
    write_records(
        tmp_path,
        [
            record(seq=0, chunks_ms=[100.0, 110.0, 130.0], lags_ms=[0.5, 0.2, 0.7]),
            record(seq=1, chunks_ms=[], lags_ms=None, ok=False, error="connect"),
            record(seq=2, chunks_ms=[50.0, 51.5], lags_ms=[0.9, 0.1]),
        ],
    )
    records = load_records(tmp_path)
    frame = records.frame
    assert len(frame) == 3 and list(frame["row"]) == [0, 1, 2]
    # ITL never crosses from one request into the next
    np.testing.assert_allclose(list_diffs(frame["chunks_ms"]), [10.0, 20.0, 1.5])
    np.testing.assert_allclose(list_firsts(frame["lags_ms"]), [0.5, 0.9])
    np.testing.assert_allclose(list_diffs(frame["chunks_ms"].iloc[2:]), [1.5])
    # the flattened form, addressed by row position, gives the same numbers
    chunks, lags = records.lists("chunks_ms"), records.lists("lags_ms")
    np.testing.assert_allclose(chunks.diffs(np.array([0, 1, 2])), [10.0, 20.0, 1.5])
    np.testing.assert_allclose(chunks.diffs(np.array([2])), [1.5])
    np.testing.assert_allclose(chunks.select(np.array([0])), [100.0, 110.0, 130.0])
    np.testing.assert_allclose(lags.firsts(np.array([1, 2])), [0.9])
    np.testing.assert_allclose(lags.select(np.array([1, 2])), [0.9, 0.1])
    assert "chunks_ms" not in records.scalars


def test_torn_last_line_and_corrupt_line_are_skipped_with_warnings(tmp_path):
    path = write_records(tmp_path, [record(seq=0), record(seq=1)])
    with path.open("a") as fh:
        fh.write("{not json at all}\n")
        fh.write('{"target": "direct", "start_ns": "yesterday", "ok": true}\n')
    write_records(tmp_path, [record(seq=3)])
    with path.open("a") as fh:
        fh.write('{"target": "direct", "seq": 4, "start_')  # a killed run
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = load_records(tmp_path)
    assert sorted(records.frame["seq"]) == [0, 1, 3]
    notes = " ".join(records.skipped)
    assert "torn last line" in notes and "2 corrupt line(s) (line 3, 4)" in notes
    assert any(issubclass(w.category, RecordWarning) for w in caught)


def test_no_records_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no records"):
        load_records(tmp_path)
    with pytest.raises(UsageError, match="not a directory"):
        load_records(tmp_path / "missing")


def test_only_garbage_is_a_usage_error(tmp_path):
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "direct.w1.jsonl").write_text("garbage\n")
    with pytest.warns(RecordWarning), pytest.raises(UsageError, match="no readable record"):
        load_records(tmp_path)
