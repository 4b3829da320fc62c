import numpy as np

from reports.folder import load_folder
from reports.timeseries import errors_per_second, is_step_run, per_second, per_step

from .helpers import T0, record, write_meta, write_records

S = 1_000_000_000


def _run(tmp_path):
    write_meta(tmp_path)
    write_records(
        tmp_path,
        [
            record(seq=0, start_ns=T0 + 100_000_000, ttft_ms=100.0, users=2, step=0),
            record(seq=1, start_ns=T0 + 900_000_000, ttft_ms=300.0, users=2, step=0),
            record(seq=2, start_ns=T0 + 2 * S, ttft_ms=None, ok=False, error="http_5xx",
                   status=500, users=4, step=1, chunks_ms=[], lags_ms=None),
            record(seq=3, start_ns=T0 + 2 * S + 5, ttft_ms=50.0, users=4, step=1),
        ],
    )  # fmt: skip
    write_records(
        tmp_path,
        [record(seq=0, worker="w2", start_ns=T0 + 2 * S + 7, ttft_ms=70.0, users=3, step=1)],
        name="direct.w2.jsonl",
    )
    return load_folder(tmp_path)


def test_per_second_bins_by_send_time(tmp_path):
    series = per_second(_run(tmp_path)).set_index("second")
    assert list(series.index) == [0, 1, 2]
    assert list(series["requests"]) == [2, 0, 3]
    assert list(series["errors"]) == [0, 0, 1]
    assert series.loc[0, "ttft_p50"] == 200.0  # (100 + 300) / 2
    assert series.loc[0, "ttft_p95"] == 290.0  # 100 + 0.95 * 200
    assert series.loc[2, "ttft_p50"] == 60.0  # failed request left out: 50, 70
    # users: the largest per worker in that second, summed over workers (4 + 3)
    assert series.loc[2, "users"] == 7 and series.loc[1, "users"] == 2  # carried forward


def test_errors_per_second_and_steps(tmp_path):
    folder = _run(tmp_path)
    errors = errors_per_second(folder)
    assert errors[["second", "error", "count"]].values.tolist() == [[2, "http_5xx", 1]]
    assert is_step_run(folder)
    steps = per_step(folder).set_index("step")
    assert list(steps["requests"]) == [2, 3]
    assert steps.loc[1, "users"] == 7 and steps.loc[1, "ok"] == 2
    assert np.isclose(steps.loc[1, "error_rate"], 1 / 3)
    assert steps.loc[0, "ttft_p50"] == 200.0
    assert steps.loc[0, "ttft_p95_low"] <= steps.loc[0, "ttft_p95"] <= steps.loc[0, "ttft_p95_high"]


def test_users_come_from_load_generator_samples_when_present(tmp_path):
    import json

    _run(tmp_path)
    (tmp_path / "loadgen").mkdir()
    samples = [  # second 1: w1 reports 6 then 9 (last wins); w2 reports 5
        {"t_ns": T0 + S + 1, "worker": "w1", "cpu_pct": 10.0, "rss_mb": 50.0, "users": 6},
        {"t_ns": T0 + S + 500, "worker": "w1", "cpu_pct": 10.0, "rss_mb": 50.0, "users": 9},
        {"t_ns": T0 + S + 9, "worker": "w2", "cpu_pct": 10.0, "rss_mb": 50.0, "users": 5},
    ]
    (tmp_path / "loadgen" / "direct.w1.jsonl").write_text(
        "".join(json.dumps(x) + "\n" for x in samples)
    )
    series = per_second(load_folder(tmp_path)).set_index("second")
    assert series.loc[1, "users"] == 14  # 9 + 5, not the records' 2
    assert series.loc[0, "users"] == 2  # no sample in second 0: the records' value
