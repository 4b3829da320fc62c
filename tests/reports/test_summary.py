import json

from reports.summary import build_summary, write_summary

from .helpers import T0, record, write_meta, write_records


def test_summary_matches_hand_computed_numbers(tmp_path):
    write_meta(tmp_path)
    write_records(
        tmp_path,
        [
            record(seq=0, ttft_ms=100.0, e2e_ms=130.0, chunks_ms=[100.0, 110.0, 130.0],
                   lags_ms=[0.5, 0.2, 0.7], output_tokens=3),
            record(seq=1, ttft_ms=200.0, e2e_ms=250.0, chunks_ms=[200.0, 240.0],
                   lags_ms=[1.5, 0.1], output_tokens=2),
            record(seq=2, ttft_ms=None, e2e_ms=5.0, chunks_ms=[], lags_ms=None, ok=False,
                   status=429, error="http_429", output_tokens=0),
            record(seq=3, ttft_ms=50.0, e2e_ms=60.0, chunks_ms=[50.0], lags_ms=[0.3],
                   ok=False, status=200, error="truncated", output_tokens=1),
        ],
    )  # fmt: skip
    summary = write_summary(tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    t = summary["targets"]["direct"]
    assert (t["requests"], t["ok"]) == (4, 2)
    assert t["errors"] == {"http_429": 1, "truncated": 1}
    assert t["ttft_ms"]["p50"] == 150.0 and t["ttft_ms"]["max"] == 200.0
    assert t["ttft_ms"]["p90"] == 190.0  # 100 + 0.9 * 100
    assert t["itl_ms"]["count"] == 3  # 10, 20, 40 — only successful requests
    assert t["itl_ms"]["mean"] == round(70 / 3, 3) and t["itl_ms"]["p50"] == 20.0
    assert t["e2e_ms"]["mean"] == 190.0
    assert t["output_tokens"] == 6
    # run.json window: 10 s
    assert t["requests_per_s"] == 0.4 and t["output_tokens_per_s"] == 0.6
    # lags from every stamped record: firsts 0.5, 1.5, 0.3; all 6 chunks
    assert t["first_token_lag_ms"]["p50"] == 0.5 and t["first_token_lag_ms"]["count"] == 3
    assert t["chunk_lag_ms"]["count"] == 6 and t["chunk_lag_ms"]["max"] == 1.5
    assert summary["run"] == {
        "scenario": "steady", "started_at": "2026-09-21T12:26:40+00:00", "duration_s": 10.0,
        "command": "relaybench run", "ended_at": None, "interrupted": False, "users": 1, "seed": 1,
    }  # fmt: skip
    assert set(summary["health"]) >= {"degraded", "reasons", "loadgen_cpu_max_pct"}


def test_contract_keys_present_and_lags_null_without_stamps(tmp_path):
    write_records(tmp_path, [record(seq=0, lags_ms=None), record(seq=1, lags_ms=None)])
    summary = build_summary(tmp_path)  # no run.json: window from the records
    t = summary["targets"]["direct"]
    for key in (
        "requests",
        "ok",
        "errors",
        "ttft_ms",
        "itl_ms",
        "e2e_ms",
        "output_tokens",
        "output_tokens_per_s",
        "requests_per_s",
        "first_token_lag_ms",
        "chunk_lag_ms",
    ):
        assert key in t  # fmt: skip
    assert t["first_token_lag_ms"] is None and t["chunk_lag_ms"] is None
    # first send at T0, last end at T0 + 1 s + 130 ms
    assert t["duration_s"] == 1.13
    assert summary["run"]["started_at"].startswith("2026-09-21")
    assert any("run.json is missing" in note for note in summary["notes"])


def test_open_loop_reports_service_and_response_time(tmp_path):
    write_meta(tmp_path)
    # intended 0 / 1 s; the second request left 40 ms late
    write_records(
        tmp_path,
        [
            record(seq=0, intended_ns=T0, start_ns=T0, rate=1.0, ttft_ms=100.0),
            record(seq=1, intended_ns=T0 + 10**9, start_ns=T0 + 10**9 + 40_000_000, rate=1.0,
                   ttft_ms=100.0, e2e_ms=200.0),
        ],
    )  # fmt: skip
    t = build_summary(tmp_path)["targets"]["direct"]
    assert t["ttft_ms"]["max"] == 100.0
    assert t["ttft_response_ms"]["max"] == 140.0 and t["ttft_response_ms"]["p50"] == 120.0
    assert t["e2e_response_ms"]["max"] == 240.0
    assert t["schedule_lag_ms"]["max"] == 40.0


def test_zero_successful_requests_still_give_valid_json(tmp_path):
    write_records(tmp_path, [record(seq=0, ok=False, error="connect", ttft_ms=None,
                                    chunks_ms=[], lags_ms=None, status=None)])  # fmt: skip
    summary = write_summary(tmp_path)
    t = summary["targets"]["direct"]
    assert t["ok"] == 0 and t["ttft_ms"]["count"] == 0 and t["ttft_ms"]["p95"] is None
    json.loads((tmp_path / "summary.json").read_text())


def test_usage_mismatches_count_complete_streams_only(tmp_path):
    write_meta(tmp_path)
    write_records(
        tmp_path,
        [
            record(seq=0, chunks_ms=[1.0, 2.0], usage_tokens=2, content_chunks=2),
            record(seq=1, chunks_ms=[1.0, 2.0], usage_tokens=3, content_chunks=2),  # lost one
            record(seq=2, chunks_ms=[1.0], usage_tokens=None, content_chunks=1),
            record(seq=3, chunks_ms=[1.0], usage_tokens=9, content_chunks=1, stream=False),
            record(seq=4, chunks_ms=[1.0], usage_tokens=5, content_chunks=1, ok=False,
                   error="truncated"),
        ],
    )  # fmt: skip
    assert build_summary(tmp_path)["targets"]["direct"]["usage_mismatches"] == 1
