from reports.markdown import health_lines, results_table
from reports.summary import build_summary
from reports.synthetic import SyntheticRun, write_run


def test_results_table_has_a_row_per_target_with_numbers(tmp_path):
    write_run(tmp_path, SyntheticRun(steps=((5, 3.0),)))
    summary = build_summary(tmp_path)
    lines = results_table(summary).splitlines()
    assert lines[0].startswith("| target | requests | ok | error rate | TTFT p50 ms")
    assert [line.split("|")[1].strip() for line in lines[2:]] == [
        "direct", "relay", "relay-buffered"
    ]  # fmt: skip
    p95 = summary["targets"]["relay"]["ttft_ms"]["p95"]
    assert f"{p95:,.1f}" in lines[3]
    assert health_lines(summary).startswith("**Health: OK**")


def test_degraded_health_lists_every_reason():
    summary = {"health": {"degraded": True, "reasons": ["a b", "c d"], "loadgen_cpu_max_pct": 99}}
    text = health_lines(summary)
    assert "DEGRADED" in text and "- ⚠ a b" in text and "- ⚠ c d" in text
