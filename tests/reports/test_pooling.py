"""Vectorised list handling equals the obvious per-row loop; worker files pool exactly."""

import itertools
import json
import shutil

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from reports.records import FlatList
from reports.summary import build_summary
from reports.synthetic import SyntheticRun, write_run

lists = st.lists(
    st.one_of(st.none(), st.lists(st.floats(0, 1e4, allow_nan=False), max_size=6)), max_size=12
)


@settings(max_examples=200, deadline=None)
@given(lists, st.data())
def test_flat_list_matches_a_per_row_loop(rows, data):
    flat = FlatList.of(pa.array(rows, type=pa.list_(pa.float64())))
    picked = data.draw(st.lists(st.integers(0, max(len(rows) - 1, 0)), unique=True)) if rows else []
    picked = sorted(picked)
    ids = np.array(picked, dtype=np.int64)
    chosen = [rows[i] or [] for i in picked]
    np.testing.assert_array_equal(flat.select(ids), [v for r in chosen for v in r])
    np.testing.assert_array_equal(flat.firsts(ids), [r[0] for r in chosen if r])
    expected = [b - a for r in chosen for a, b in itertools.pairwise(r)]
    np.testing.assert_allclose(flat.diffs(ids), expected)


def test_summary_of_split_worker_files_equals_the_pooled_one(tmp_path):
    """A distributed run writes one file per process: the split must not change a number."""
    pooled = tmp_path / "pooled"
    write_run(pooled, SyntheticRun(steps=((8, 3.0),), error_rate=0.05))
    split = tmp_path / "split"
    shutil.copytree(pooled, split)
    for path in sorted((split / "records").glob("*.jsonl")):
        lines = path.read_text().splitlines(keepends=True)
        target = path.name.split(".")[0]
        path.unlink()
        for w in range(3):  # round-robin over three "processes"
            part = [json.loads(x) | {"worker": f"w{w}"} for x in lines[w::3]]
            (split / "records" / f"{target}.w{w}.jsonl").write_text(
                "".join(json.dumps(r) + "\n" for r in part)
            )
    a, b = build_summary(pooled), build_summary(split)
    assert a["targets"] == b["targets"]
    # the overhead estimates are exact; their bootstrap intervals depend on the resampling
    # order (which request gets which random draw), so they agree only up to resampling noise
    for name, block in a["overhead"].items():
        for key, value in block.items():
            other = b["overhead"][name][key]
            if not isinstance(value, dict):
                assert value == other
                continue
            assert (value["value"], value["n_a"], value["n_b"]) == (
                other["value"], other["n_a"], other["n_b"])  # fmt: skip
            width = value["ci_high"] - value["ci_low"]
            assert abs(value["ci_low"] - other["ci_low"]) <= 0.25 * width
            assert abs(value["ci_high"] - other["ci_high"]) <= 0.25 * width
