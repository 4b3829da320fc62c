"""Records the run's stop cut off (error ``interrupted``) are counted apart, not as failures.

The same hand-written record set is summarised twice, once with four interrupted records added
(one with chunks, stamps and a first token, as a stream cut at Ctrl-C leaves them): every figure
of the target must be the same, the extra ones only in ``interrupted`` and a note; the gate,
which reads ``error_rate`` from summary.json, gives the same verdict for both.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from reports import samples
from reports.folder import load_folder
from reports.pipeline import rebuild
from reports.summary import write_summary

from .helpers import record, write_meta, write_records

CUT = 4


def _measured() -> list[dict]:
    return [
        record(seq=0),
        record(seq=1, ttft_ms=200.0, e2e_ms=260.0, chunks_ms=[200.0, 230.0, 260.0]),
        record(seq=2, ttft_ms=150.0, e2e_ms=170.0, chunks_ms=[150.0, 160.0, 170.0]),
        record(seq=3, ttft_ms=None, e2e_ms=5.0, chunks_ms=[], lags_ms=None, ok=False,
               status=503, error="http_5xx", error_detail="HTTP 503: busy", output_tokens=0),
    ]  # fmt: skip


def _cut(seq: int) -> dict:
    detail = "the run was stopped while this request was in flight"
    return record(
        seq=seq, ok=False, error="interrupted", error_detail=detail, ttft_ms=900.0,
        e2e_ms=950.0, chunks_ms=[900.0, 950.0], lags_ms=[40.0, 60.0], output_tokens=2,
        usage_tokens=None, content_chunks=2,
    )  # fmt: skip


def _with_cut(n: int = CUT) -> list[dict]:
    return [*_measured(), *(_cut(10 + k) for k in range(n))]


def _folder(path: Path, records: list[dict]) -> Path:
    path.mkdir()
    write_meta(path)
    write_records(path, records)
    return path


def _gate(run_dir: Path, limits: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relaybench", "gate", str(run_dir), "--thresholds", str(limits)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_interrupted_records_change_no_figure_and_are_counted_apart(tmp_path: Path) -> None:
    plain = _folder(tmp_path / "plain", _measured())
    cut = _folder(tmp_path / "cut", _with_cut())
    a = write_summary(plain)["targets"]["direct"]
    summary = write_summary(cut)
    b = summary["targets"]["direct"]

    assert a["interrupted"] == 0 and b["interrupted"] == CUT
    assert (b["requests"], b["ok"], b["errors"]) == (4, 3, {"http_5xx": 1})
    assert b["error_rate"] == a["error_rate"] == 0.25
    same = {k: v for k, v in a.items() if k != "interrupted"}
    assert {k: v for k, v in b.items() if k != "interrupted"} == same  # latencies, lags, rates
    assert b["chunk_lag_ms"]["max"] < 40.0  # the cut records' stamps are in no sample
    note = "direct: 4 request(s) in flight when the run stopped are counted as interrupted"
    assert any(n.startswith(note) for n in summary["notes"])


def test_no_sample_takes_an_interrupted_record(tmp_path: Path) -> None:
    folder = load_folder(_folder(tmp_path / "cut", _with_cut(2)))
    rows = folder.groups()["direct"]
    assert samples.interrupted(rows).sum() == 2 and len(samples.counted(rows)) == 4
    for metric in samples.SELECTORS:
        picked = samples.select(folder.records, rows, metric)
        alone = samples.select(folder.records, samples.counted(rows), metric)
        assert list(picked.values) == list(alone.values), metric
        assert not {40.0, 60.0, 900.0, 950.0} & set(picked.values), metric  # the cut ones' values


def test_the_gate_reads_the_error_rate_without_interrupted_records(tmp_path: Path) -> None:
    limits = tmp_path / "limits.toml"
    limits.write_text('[direct]\n"error_rate" = "<= 0.3"\n')
    plain = _folder(tmp_path / "plain", _measured())
    cut = _folder(tmp_path / "cut", _with_cut())
    for run_dir in (plain, cut):
        write_summary(run_dir)
        gate = _gate(run_dir, limits)
        assert gate.returncode == 0, gate.stdout + gate.stderr
        assert "PASS  direct  error_rate" in gate.stdout


def test_the_report_says_how_many_were_interrupted(tmp_path: Path) -> None:
    cut = _folder(tmp_path / "cut", _with_cut())
    rebuild(cut)
    report = (cut / "report.md").read_text()
    assert "4 request(s) in flight when the run stopped are counted as interrupted" in report


def test_compare_and_the_gates_records_leave_interrupted_records_out(tmp_path: Path) -> None:
    from reports.compare import _failures
    from reports.gate import open_run

    plain = _folder(tmp_path / "plain", _measured())
    cut = _folder(tmp_path / "cut", _with_cut())
    assert (
        _failures(load_folder(cut), "direct") == _failures(load_folder(plain), "direct") == (1, 4)
    )
    for run_dir in (plain, cut):
        write_summary(run_dir)
    assert len(open_run(cut).records("direct")) == len(open_run(plain).records("direct")) == 4
