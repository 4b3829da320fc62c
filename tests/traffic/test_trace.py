"""Trace parsing (every format, every bad input) and the schedule built from it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from relaybench.errors import UsageError
from relaybench.traffic import trace

AZURE = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:50.9951690,396,109
2023-11-16 18:15:51.2224670,879,55
"""


def write(tmp_path: Path, text: str, name: str = "t.txt") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def usage(path: Path) -> str:
    with pytest.raises(UsageError) as err:
        trace.load(path)
    assert err.value.exit_code == 2
    assert str(path) in err.value.message
    assert "\n" not in err.value.message
    return err.value.message


# -- formats -------------------------------------------------------------------------------------


def test_azure_csv(tmp_path: Path) -> None:
    tr = trace.load(write(tmp_path, AZURE))
    assert tr.format == "azure"
    np.testing.assert_allclose(tr.t_s, [0.0, 4.314579, 4.541877], atol=1e-6)
    assert tr.input_tokens.tolist() == [374, 396, 879]
    assert tr.output_tokens.tolist() == [44, 109, 55]
    assert tr.row.tolist() == [0, 1, 2]
    assert tr.session is None and tr.notes == ()


def test_mooncake_jsonl(tmp_path: Path) -> None:
    text = (
        '{"timestamp": 0, "input_length": 6955, "output_length": 52, "hash_ids": [1, 2]}\n'
        "\n"
        '{"timestamp": 1500, "input_length": 10, "output_length": 5}\n'
    )
    tr = trace.load(write(tmp_path, text))
    assert tr.format == "mooncake"
    assert tr.t_s.tolist() == [0.0, 1.5]
    assert tr.input_tokens.tolist() == [6955, 10]
    assert tr.output_tokens.tolist() == [52, 5]


def test_generic_csv_seconds_with_sessions(tmp_path: Path) -> None:
    text = "t_s,input_tokens,output_tokens,session\n10.5,100,20,a\n12,300,30,a\n11,50,5,\n"
    tr = trace.load(write(tmp_path, text))
    assert tr.format == "generic"
    assert tr.t_s.tolist() == [0.0, 0.5, 1.5]  # sorted, from the first arrival
    assert tr.row.tolist() == [0, 2, 1]
    assert tr.session is not None and tr.session.tolist() == ["a", "", "a"]
    assert any("sorted" in n for n in tr.notes)


def test_generic_csv_iso_times_with_offsets(tmp_path: Path) -> None:
    text = (
        "time,input_tokens,output_tokens\n"
        "2024-01-01T10:00:00Z,10,1\n"
        "2024-01-01T11:00:02+01:00,10,1\n"  # 10:00:02 UTC
        "2024-01-01 10:00:05.250,10,1\n"
    )
    tr = trace.load(write(tmp_path, text))
    assert tr.t_s.tolist() == [0.0, 2.0, 5.25]


def test_generic_jsonl(tmp_path: Path) -> None:
    text = (
        '{"t_s": 1, "input_tokens": 5, "output_tokens": 7, "session": "s1"}\n'
        '{"t_s": 3, "input_tokens": 6, "output_tokens": 8}\n'
    )
    tr = trace.load(write(tmp_path, text))
    assert tr.format == "generic"
    assert tr.t_s.tolist() == [0.0, 2.0]
    assert tr.session is not None and tr.session.tolist() == ["s1", ""]


def test_generic_jsonl_iso(tmp_path: Path) -> None:
    text = '{"time": "2024-01-01T00:00:00Z", "input_tokens": 5, "output_tokens": 7}\n' * 2
    tr = trace.load(write(tmp_path, text))
    assert tr.t_s.tolist() == [0.0, 0.0]
    assert any("share a timestamp" in n for n in tr.notes)


def test_shipped_trace_is_the_default() -> None:
    tr = trace.load(trace.default_path())
    assert tr.format == "azure"
    assert len(tr) == 19366
    assert 3500 < tr.duration_s < 3600
    assert tr.notes == ()
    here = trace.default_path().parent
    assert (here / "LICENSE-CC-BY-4.0.txt").is_file()
    assert "Changes: none" in (here / "README.md").read_text(encoding="utf-8")


# -- bad input -----------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    assert "no such file" in usage(tmp_path / "nope.csv")


def test_directory(tmp_path: Path) -> None:
    assert "directory" in usage(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable(tmp_path: Path) -> None:
    p = write(tmp_path, AZURE)
    p.chmod(0)
    assert "cannot read" in usage(p)


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux /proc")
def test_unreadable_even_for_root() -> None:
    assert "cannot read: Input/output error" in usage(Path("/proc/self/mem"))


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_empty(tmp_path: Path, text: str) -> None:
    assert "empty" in usage(write(tmp_path, text))


def test_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "bin"
    p.write_bytes(b"TIMESTAMP,\xff\xfe\n")
    assert "UTF-8" in usage(p)


def test_unknown_csv_header(tmp_path: Path) -> None:
    msg = usage(write(tmp_path, "\nwhen,prompt,answer\n1,2,3\n"))
    assert "line 2" in msg and "no known format" in msg and "when,prompt,answer" in msg


def test_unknown_jsonl_keys(tmp_path: Path) -> None:
    msg = usage(write(tmp_path, '{"ts": 1, "in": 2}\n'))
    assert "line 1" in msg and "no known format" in msg


def test_header_only(tmp_path: Path) -> None:
    assert "no data rows" in usage(write(tmp_path, "t_s,input_tokens,output_tokens\n"))


def test_wrong_field_count(tmp_path: Path) -> None:
    msg = usage(write(tmp_path, AZURE + "2023-11-16 18:15:52,1\n"))
    assert "line 5" in msg and "expected 3 fields" in msg


def test_bad_number_names_line_and_field(tmp_path: Path) -> None:
    text = "t_s,input_tokens,output_tokens\n1,10,10\n\n2,ten,10\n"
    msg = usage(write(tmp_path, text))
    assert "line 4" in msg and "input_tokens" in msg and "'ten'" in msg


def test_bad_time_names_line_and_field(tmp_path: Path) -> None:
    msg = usage(write(tmp_path, AZURE + "yesterday,1,1\n"))
    assert "line 5" in msg and "TIMESTAMP" in msg and "'yesterday'" in msg


def test_nan_time(tmp_path: Path) -> None:
    msg = usage(write(tmp_path, "t_s,input_tokens,output_tokens\n1,1,1\nnan,1,1\n"))
    assert "line 3" in msg and "t_s" in msg


def test_bad_jsonl_lines(tmp_path: Path) -> None:
    good = '{"timestamp": 0, "input_length": 1, "output_length": 1}\n'
    assert "line 2: not a JSON object" in usage(write(tmp_path, good + "{oops\n"))
    assert "line 2: not a JSON object" in usage(write(tmp_path, good + "[1]\n"))
    msg = usage(write(tmp_path, good + '{"timestamp": 1, "input_length": 1}\n'))
    assert "line 2" in msg and "output_length: missing" in msg
    msg = usage(
        write(tmp_path, good + '{"timestamp": "x", "input_length": 1, "output_length": 1}\n')
    )
    assert "line 2" in msg and "timestamp" in msg and "not a number" in msg


def test_bad_token_counts_are_skipped_and_counted(tmp_path: Path) -> None:
    text = (
        "t_s,input_tokens,output_tokens\n"
        "0,10,10\n"
        "1,-5,10\n"  # negative
        "2,10,0\n"  # no output
        "3,10,999999999\n"  # absurd
        "4,2.5,10\n"  # not whole
        "5,20,20\n"
    )
    tr = trace.load(write(tmp_path, text))
    assert tr.row.tolist() == [0, 5]
    assert tr.input_tokens.tolist() == [10, 20]
    joined = " ".join(tr.notes)
    assert "2 rows skipped: input_tokens" in joined and "line 3" in joined
    assert "2 rows skipped: output_tokens" in joined and "line 4" in joined


def test_nothing_usable_left(tmp_path: Path) -> None:
    msg = usage(write(tmp_path, "t_s,input_tokens,output_tokens\n0,-1,10\n1,0,10\n"))
    assert "no usable rows" in msg and "line 2" in msg


# -- the schedule --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> trace.Trace:
    return trace.load(trace.default_path())


def test_whole_trace_at_1x(shipped: trace.Trace) -> None:
    s = trace.build_schedule(shipped)
    assert len(s) == len(shipped)
    np.testing.assert_array_equal(s.offset_s, shipped.t_s)
    np.testing.assert_array_equal(s.row, shipped.row)
    assert s.span_s == shipped.duration_s


def test_speedup_compresses_time(shipped: trace.Trace) -> None:
    s = trace.build_schedule(shipped, speedup=10)
    assert len(s) == len(shipped)
    np.testing.assert_allclose(s.offset_s, shipped.t_s / 10)
    assert s.span_s == pytest.approx(shipped.duration_s / 10)


def test_window_cuts(shipped: trace.Trace) -> None:
    s = trace.build_schedule(shipped, start_s=600, window_s=600, speedup=10)
    t = shipped.t_s
    assert len(s) == int(((t >= 600) & (t < 1200)).sum())
    assert s.offset_s.min() >= 0 and s.offset_s.max() < 60
    assert s.span_s == pytest.approx(60)
    assert s.row[0] == shipped.row[np.searchsorted(t, 600)]


def test_window_past_the_end_is_cut_with_a_note(shipped: trace.Trace) -> None:
    s = trace.build_schedule(shipped, start_s=3000, window_s=3600)
    assert len(s) == int((shipped.t_s >= 3000).sum())
    assert s.span_s == pytest.approx(shipped.duration_s - 3000)
    assert any("past the trace's last arrival" in n for n in s.notes)


@pytest.mark.parametrize("k", [0.5, 1, 3, 10])
def test_rate_scale_count_and_shape(shipped: trace.Trace, k: float) -> None:
    base = trace.build_schedule(shipped, start_s=0, window_s=1800, speedup=10)
    s = trace.build_schedule(shipped, start_s=0, window_s=1800, speedup=10, rate_scale=k, seed=7)
    assert len(s) == round(k * len(base))
    assert np.all(np.diff(s.offset_s) >= 0)
    assert s.offset_s.min() >= 0 and s.offset_s.max() <= s.span_s
    per_minute = base.per_bin(6.0)  # one trace minute at 10x
    scaled = s.per_bin(6.0)
    assert len(per_minute) == len(scaled) == 30
    assert np.corrcoef(per_minute, scaled)[0, 1] > 0.9
    assert scaled.sum() == len(s)
    # every arrival is a real row's: same token counts as the row it names
    by_row = dict(zip(shipped.row.tolist(), shipped.input_tokens.tolist(), strict=True))
    assert all(by_row[r] == i for r, i in zip(s.row.tolist(), s.input_tokens.tolist(), strict=True))


def test_extra_arrivals_sit_between_neighbours(tmp_path: Path) -> None:
    # two bursts 100 s apart: copies must stay inside the bursts, none in the gap
    rows = [f"{t},10,10" for t in [*np.arange(0, 10, 0.5), *np.arange(100, 110, 0.5)]]
    tr = trace.load(write(tmp_path, "t_s,input_tokens,output_tokens\n" + "\n".join(rows)))
    s = trace.build_schedule(tr, rate_scale=5, seed=3)
    assert len(s) == 200
    # a copy stays within its row's smaller gap (0.5 s here): none in the 90 s lull
    nearest = np.abs(s.offset_s[:, None] - tr.t_s[None, :]).min(axis=1)
    assert nearest.max() <= 0.5
    assert not ((s.offset_s > 10) & (s.offset_s < 99.5)).any()


def test_seeded_identity(shipped: trace.Trace) -> None:
    a = trace.build_schedule(shipped, rate_scale=3, seed=11, window_s=900)
    b = trace.build_schedule(shipped, rate_scale=3, seed=11, window_s=900)
    c = trace.build_schedule(shipped, rate_scale=3, seed=12, window_s=900)
    np.testing.assert_array_equal(a.offset_s, b.offset_s)
    np.testing.assert_array_equal(a.row, b.row)
    assert not np.array_equal(a.offset_s, c.offset_s)
    thin_a = trace.build_schedule(shipped, rate_scale=0.5, seed=11)
    thin_b = trace.build_schedule(shipped, rate_scale=0.5, seed=11)
    np.testing.assert_array_equal(thin_a.row, thin_b.row)


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_share_is_an_exact_partition(shipped: trace.Trace, count: int) -> None:
    s = trace.build_schedule(shipped, rate_scale=3, seed=5, window_s=600)
    parts = [s.share(i, count) for i in range(count)]
    assert sum(len(p) for p in parts) == len(s)
    merged = sorted(
        (float(o), int(r)) for p in parts for o, r in zip(p.offset_s, p.row, strict=True)
    )
    assert merged == sorted(zip(s.offset_s.tolist(), s.row.tolist(), strict=True))
    if count > 1:
        assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1


def test_share_keeps_a_session_on_one_process(tmp_path: Path) -> None:
    rows = [f"{i},10,10,{'s' + str(i % 7) if i % 3 else ''}" for i in range(300)]
    text = "t_s,input_tokens,output_tokens,session\n" + "\n".join(rows)
    s = trace.build_schedule(trace.load(write(tmp_path, text)))
    parts = [s.share(i, 3) for i in range(3)]
    assert sum(len(p) for p in parts) == 300
    owners: dict[str, set[int]] = {}
    for i, p in enumerate(parts):
        assert p.session is not None
        for name in p.session.tolist():
            if name:
                owners.setdefault(name, set()).add(i)
    assert len(owners) == 7 and all(len(o) == 1 for o in owners.values())
    assert sorted(r for p in parts for r in p.row.tolist()) == list(range(300))


def test_rate_scale_copies_are_sent_alone(tmp_path: Path) -> None:
    rows = [f"{i},10,10,s{i % 4}" for i in range(40)]
    text = "t_s,input_tokens,output_tokens,session\n" + "\n".join(rows)
    s = trace.build_schedule(trace.load(write(tmp_path, text)), rate_scale=2, seed=1)
    assert s.session is not None
    assert (s.session == "").sum() == 40 and (s.session != "").sum() == 40


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"speedup": 0}, "--speedup"),
        ({"speedup": -2}, "--speedup"),
        ({"speedup": float("nan")}, "--speedup"),
        ({"rate_scale": 0}, "--rate-scale"),
        ({"rate_scale": -1}, "--rate-scale"),
        ({"rate_scale": float("inf")}, "--rate-scale"),
        ({"start_s": -1}, "--trace-start"),
        ({"window_s": 0}, "--trace-window"),
        ({"start_s": 99999}, "after the trace's last arrival"),
        ({"rate_scale": 1e-9}, "keeps none"),
    ],
)
def test_bad_controls(shipped: trace.Trace, kwargs: dict, needle: str) -> None:
    with pytest.raises(UsageError) as err:
        trace.build_schedule(shipped, **kwargs)
    assert needle in err.value.message and err.value.exit_code == 2


def test_window_with_no_arrivals(tmp_path: Path) -> None:
    tr = trace.load(write(tmp_path, "t_s,input_tokens,output_tokens\n0,1,1\n100,1,1\n"))
    with pytest.raises(UsageError) as err:
        trace.build_schedule(tr, start_s=10, window_s=20)
    assert (
        "no arrivals between 10 and 30 s" in err.value.message and str(tr.path) in err.value.message
    )
