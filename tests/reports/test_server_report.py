"""The server side in report.md / report.html (the ``server`` block and the leak watch's
sentences) and ``relaybench gate`` on ``server.SERVER.FIELD`` paths, on synthetic run folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import orjson
import pytest

from relaybench.cli import main as relaybench
from relaybench.errors import UsageError
from relaybench.scrape.usage import FIELDS
from reports.pipeline import rebuild
from reports.synthetic import SyntheticRun, write_run
from reports.tables import server_rows
from reports.thresholds import parse_thresholds

S = 1_000_000_000


def _write_relay_samples(run: Path, rss_growth_per_s: float, fds_growth_per_s: float) -> None:
    """The relay's process, one sample a second from before the first target to after the last
    (0.25 CPU-s a second)."""
    windows = json.loads((run / "run.json").read_text())["targets"].values()
    first = min(w["started_ns"] for w in windows) - S
    last = max(w["ended_ns"] for w in windows) + S
    server = run / "server"
    server.mkdir()
    rng = np.random.default_rng(5)
    rows = []
    for i, t in enumerate(range(first, last, S)):
        gauges = {
            "cpu_pct": 25.0 + (i % 3),
            "cpu_s": 0.25 * (i + 1),
            "rss_mb": 60 + rss_growth_per_s * i + rng.normal(0, 0.2),
            "fds": float(20 + int(fds_growth_per_s * i)),
            "threads": 2.0,
        }
        rows.append({"time_ns": t, "mono_ns": t, "gauges": gauges})
    (server / "relay.process.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))


@pytest.fixture(scope="module")
def leaking(tmp_path_factory) -> tuple[Path, dict]:
    """A soak whose relay grows 12 MiB a minute and holds its fds; report and summary built."""
    run = tmp_path_factory.mktemp("leaking") / "run"
    write_run(run, SyntheticRun(scenario="soak", steps=((10, 60.0),)))
    _write_relay_samples(run, rss_growth_per_s=0.2, fds_growth_per_s=0.0)
    return run, rebuild(run)


def test_report_md_has_the_server_table_and_the_leak_sentences(leaking) -> None:
    run, summary = leaking
    text = (run / "report.md").read_text()
    assert "## Server side" in text
    leaks = summary["health"]["leaks"]
    assert len(leaks) == len(summary["targets"])
    watch = text.split("**Leak watch:**\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert watch == [f"- ⚠ {sentence}" for sentence in leaks]
    assert all("MiB/min, 95% CI" in line for line in watch)
    section = text.split("## Server side", 1)[1].split("## ", 1)[0]
    assert set(summary["targets"]) == {"direct", "relay", "relay-buffered"}
    for name, target in summary["targets"].items():
        block = target["server"]["relay"]
        slope = block["leak"]["rss_mb"]["slope_per_min"]
        (row,) = [r for r in section.splitlines() if r.startswith(f"| {name} | relay |")]
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] == "relay.process"
        assert cells[3] == f"{block['peak_cpu_pct']:,.0f}"
        assert cells[4] == f"{block['cpu_s_per_request']:.3g}"
        assert cells[5] == f"{block['cpu_s_per_1k_chunks']:.3g}"
        assert cells[7] == "20 → 20"
        assert cells[8] == f"grows: RSS {slope:+.3g} MiB/min"


def test_report_html_has_the_server_table_and_the_leak_box(leaking) -> None:
    run, summary = leaking
    html = (run / "report.html").read_text()
    assert '<h2 id="server">Server side</h2>' in html
    box = html.split('id="leaks"', 1)[1].split("</div>", 1)[0]
    assert box.count("<li>") == len(summary["health"]["leaks"])
    assert "grows: RSS" in html and "relay.process" in html


def test_a_flat_steady_run_says_no_growth_and_shows_no_leak_box(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_run(run, SyntheticRun(scenario="steady", steps=((10, 60.0),)))
    _write_relay_samples(run, rss_growth_per_s=0.0, fds_growth_per_s=0.0)
    rebuild(run)
    text = (run / "report.md").read_text()
    assert "no steady growth" in text.split("## Server side", 1)[1]
    assert "Leak watch" not in text
    assert 'id="leaks"' not in (run / "report.html").read_text()


def test_a_run_without_server_samples_has_no_server_section(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_run(run, SyntheticRun())
    rebuild(run)
    assert "Server side" not in (run / "report.md").read_text()
    assert "Server side" not in (run / "report.html").read_text()


def test_server_rows_cells() -> None:
    block = {
        "source": "relay.metrics", "peak_cpu_pct": 87.46, "cpu_s_per_request": 0.001234,
        "cpu_s_per_1k_chunks": 0.0822, "peak_rss_mb": 61.25, "fds_start": 20, "fds_end": 31,
        "leak": {"fds": {"leak": True, "slope_per_min": 11.5, "unit": "fds"},
                 "rss_mb": {"leak": False, "slope_per_min": 0.1, "unit": "MiB"}},
    }  # fmt: skip
    unjudged = {"source": "mock.process", "peak_cpu_pct": None, "cpu_s_per_request": None,
                "fds_start": None, "fds_end": None}  # fmt: skip
    summary = {"targets": {"relay": {"server": {"relay": block, "mock": unjudged}}, "direct": {}}}
    header, rows = server_rows(summary)
    assert header[0:3] == ["target", "server", "source"]
    assert rows == [
        ["relay", "relay", "relay.metrics", "87", "0.00123", "0.0822", "61.2", "20 → 31",
         "grows: fds +11.5 fds/min"],
        ["relay", "mock", "mock.process", "–", "–", "–", "–", "– → –", "not judged"],
    ]  # fmt: skip
    assert server_rows({"targets": {"direct": {}}}) is None


# -- gate on server.* paths --------------------------------------------------------------------


def _gate(capsys, run: Path, toml: str, tmp: Path) -> tuple[int, str, str]:
    path = tmp / "thresholds.toml"
    path.write_text(toml)
    code = relaybench(["gate", str(run), "--thresholds", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def test_gate_passes_and_fails_on_server_paths(leaking, tmp_path, capsys) -> None:
    run, summary = leaking
    per_1k = summary["targets"]["relay"]["server"]["relay"]["cpu_s_per_1k_chunks"]
    assert per_1k > 0
    ok = f'[relay]\n"server.relay.cpu_s_per_1k_chunks" = "<= {per_1k * 1.01:.6f}"\n'
    code, out, _ = _gate(capsys, run, ok, tmp_path)
    assert code == 0, out
    assert "server.relay.cpu_s_per_1k_chunks" in out
    tight = (
        f'[relay]\n"server.relay.cpu_s_per_1k_chunks" = "<= {per_1k * 0.99:.6f}"\n'
        '"server.relay.peak_cpu_pct" = "<= 90%"\n'
    )
    code, out, _ = _gate(capsys, run, tight, tmp_path)
    assert code == 1, out
    fail = [line for line in out.splitlines() if "cpu_s_per_1k_chunks" in line]
    assert fail and "FAIL" in fail[0]
    assert "FAIL" not in next(line for line in out.splitlines() if "peak_cpu_pct" in line)


def test_gate_refuses_an_unknown_server_or_field(leaking, tmp_path, capsys) -> None:
    run, _ = leaking
    code, _, err = _gate(capsys, run, '[relay]\n"server.vllm.cpu_s" = "<= 5"\n', tmp_path)
    assert code == 2
    assert "server 'vllm'" in err and "servers: relay" in err
    with pytest.raises(UsageError, match=r"server\.SERVER\.FIELD with FIELD one of") as exc:
        parse_thresholds('[relay]\n"server.relay.cpu_seconds" = "<= 5"\n')
    assert all(field in str(exc.value) for field in FIELDS)
    with pytest.raises(UsageError, match="unknown metric"):  # derived metrics are not servers'
        parse_thresholds('[derived]\n"server.relay.cpu_s" = "<= 5"\n')
    with pytest.raises(UsageError, match="not a fraction or a percentage"):
        parse_thresholds('[relay]\n"server.relay.peak_rss_mb" = "<= 5%"\n')


def test_a_server_path_keeps_dots_in_the_server_name() -> None:
    (check,) = parse_thresholds('[relay]\n"server.my.vllm.peak_cpu_pct" = "<= 80%"\n').checks
    assert (check.metric, check.value, check.relative) == ("server.my.vllm.peak_cpu_pct", 80, False)
