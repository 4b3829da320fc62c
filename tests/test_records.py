"""The record contract round-trips: harness-built records read back through the reports' schema."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from loadtests.record import RecordBuilder
from loadtests.sink import RecordWriter
from relaybench import records
from reports.folder import load_folder
from reports.records import NUMERIC_LISTS, SCHEMA, load_records, read_file
from reports.summary import summarize
from reports.synthetic import SyntheticRun, SyntheticTarget, write_run

MS = 1_000_000
T0 = 1_800_000_000_000_000_000
ARROW = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}


def built_records() -> list[dict]:
    """One of each shape the builder makes: a stamped stream, an HTTP error, a broken body."""
    out = []
    ok = RecordBuilder(
        target="direct", worker="w1", seq=0, stream=True, start_ns=T0, start_pc=0, users=3,
        step=1, rate=2.5, intended_ns=T0 - MS, max_tokens=2,
    )  # fmt: skip
    ok.headers(200, MS)
    for i, text in enumerate(("a", "b")):
        chunk = {"choices": [{"delta": {"content": text}}], "x_mock_emitted_ns": T0 + i * MS}
        ok.body(b"data: " + orjson.dumps(chunk) + b"\n\n", (i + 2) * MS, T0 + (i + 2) * MS)
    usage = b'data: {"choices":[],"usage":{"completion_tokens":2}}\n\ndata: [DONE]\n\n'
    ok.body(usage, 4 * MS, T0 + 4 * MS)
    ok.finish(5 * MS, T0 + 5 * MS)
    out.append(ok.record())
    for seq, (stream, status, body) in enumerate(
        ((True, 429, b'{"error": {"message": "slow down"}}'), (False, 200, b"not json")), start=1
    ):
        b = RecordBuilder(
            target="direct", worker="w1", seq=seq, stream=stream, start_ns=T0, start_pc=0
        )
        b.headers(status, MS)
        b.body(body, 2 * MS, T0)
        b.finish(3 * MS, T0)
        out.append(b.record())
    cut = RecordBuilder(target="direct", worker="w1", seq=3, stream=True, start_ns=T0, start_pc=0)
    cut.fail(records.from_exception(ConnectionRefusedError(), connected=False), "refused", MS)
    out.append(cut.record())
    return out


def test_built_records_validate_against_the_contract() -> None:
    recs = built_records()
    for rec in recs:
        assert records.problems(rec) == [], rec
        assert tuple(rec) == records.FIELD_NAMES
    assert [r["error"] for r in recs] == [
        None,
        records.HTTP_429,
        records.MALFORMED,
        records.CONNECT,
    ]


def test_a_record_written_by_the_sink_reads_back_typed_as_declared(tmp_path: Path) -> None:
    recs = built_records()
    writer = RecordWriter(tmp_path, "direct", "w1")
    for rec in recs:
        writer.write(rec)
    writer.close()
    table, notes = read_file(writer.path)
    assert notes == [] and table.schema == SCHEMA
    back = table.to_pylist()
    assert back == recs
    for rec in back:
        for spec in records.FIELDS:
            value = rec[spec.name]
            assert value is not None or spec.nullable, spec.name
            for item in value if spec.is_list and value is not None else [value]:
                assert item is None or type(item) is spec.type, (spec.name, item)
    loaded = load_records(tmp_path)  # and the frame every report works from
    assert loaded.skipped == [] and list(loaded.frame["seq"]) == [0, 1, 2, 3]


def test_every_field_filled_reads_back_and_reports(tmp_path: Path) -> None:
    """Whatever fields are added, a record with all of them set reads back and builds a report."""
    example = {str: "x", int: 3, float: 1.5, bool: True}
    rec = records.new_record(target="direct", worker="w1", seq=0, stream=True, start_ns=T0)
    for spec in records.FIELDS:
        if rec[spec.name] is None or spec.is_list:
            value = example[spec.type]
            rec[spec.name] = [value, value] if spec.is_list else value
    rec.update(ok=True, ttft_ms=10.0, e2e_ms=20.0, chunks_ms=[10.0, 20.0], lags_ms=[0.1, 0.2])
    assert records.problems(rec) == []
    writer = RecordWriter(tmp_path, "direct", "w1")
    writer.write(rec)
    writer.close()
    table, notes = read_file(writer.path)
    assert notes == [] and table.to_pylist() == [rec]
    folder = load_folder(tmp_path)  # the report path: list columns flattened or kept as Arrow
    assert summarize(folder)["targets"]["direct"]["itl_ms"]["p50"] == 10.0
    for name in NUMERIC_LISTS:
        assert folder.lists(name).values.tolist() == rec[name], name


def test_the_arrow_schema_has_exactly_the_record_fields_in_order() -> None:
    assert SCHEMA.names == [f.name for f in dataclasses.fields(records.Record)]
    for spec in records.FIELDS:
        want = pa.list_(ARROW[spec.type]) if spec.is_list else ARROW[spec.type]
        assert SCHEMA.field(spec.name).type == want, spec.name


def test_adding_an_optional_field_is_one_line() -> None:
    """The schema and the defaults follow the definition; nothing else lists the fields."""

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Extended(records.Record):
        example: int | None = None

    specs = records.field_specs(Extended)
    assert specs[:-1] == records.FIELDS
    assert specs[-1] == records.FieldSpec(
        "example", int, is_list=False, nullable=True, required=False
    )


def test_bad_records_say_what_is_wrong() -> None:
    rec = records.new_record(target="t", worker="w", seq=0, stream=True, start_ns=T0)
    assert records.problems(rec) == []
    assert records.problems({**rec, "seq": True}) == ["seq: not int: True"]
    assert records.problems({**rec, "ok": None}) == ["ok: null"]
    assert records.problems({**rec, "chunks_ms": [1.0, "x"]}) == ["chunks_ms: not a list of float"]
    assert records.problems({"target": "t"}, complete=False) == []
    assert "worker: missing" in records.problems({"target": "t"})
    with pytest.raises(TypeError, match=r"unknown fields \['bogus'\], missing \['seq'"):
        records.new_record(target="t", worker="w", stream=True, start_ns=0, bogus=1)


def test_synthetic_records_follow_the_contract(tmp_path: Path) -> None:
    spec = SyntheticRun(
        steps=((2, 1.0),), error_rate=0.3, open_loop_rate=10.0,
        targets=(SyntheticTarget("direct"), SyntheticTarget("b", stream=False, stamps=False)),
    )  # fmt: skip
    write_run(tmp_path, spec)
    lines = [
        orjson.loads(line)
        for path in sorted((tmp_path / "records").glob("*.jsonl"))
        for line in path.read_bytes().splitlines()
    ]
    assert lines and all(records.problems(rec) == [] for rec in lines)


def test_the_docs_table_lists_every_record_field() -> None:
    doc = (Path(__file__).parents[1] / "docs" / "run-folder.md").read_text()
    table = doc.split("## A record", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"^\| `(\w+)` \|", table, re.M) == list(records.FIELD_NAMES)


def test_percentiles_and_stats_keys_are_one_set() -> None:
    assert records.PERCENTILES == {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0}
    assert records.STAT_KEYS == ("count", "mean", "p50", "p90", "p95", "p99", "max")
