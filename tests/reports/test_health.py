import json

from reports.folder import load_folder
from reports.health import HealthLimits, check_health
from reports.synthetic import SyntheticRun, SyntheticTarget, write_run


def _health(run_dir, **limits):
    return check_health(load_folder(run_dir), HealthLimits(**limits))


def test_a_clean_synthetic_run_is_healthy(tmp_path):
    write_run(tmp_path, SyntheticRun(steps=((5, 3.0),)))
    health = _health(tmp_path)
    assert health["degraded"] is False and health["reasons"] == []
    assert 20 < health["loadgen_cpu_max_pct"] < 50
    assert health["checked"] == [
        "load-generator CPU (9 samples)",
        "mock lateness and record counts (direct, relay, relay-buffered)",
    ]


def test_saturated_load_generator_cpu_degrades(tmp_path):
    write_run(tmp_path, SyntheticRun(steps=((5, 3.0),), loadgen_cpu_pct=97.0))
    health = _health(tmp_path)
    assert health["degraded"]
    assert any("load generator's CPU was above 90%" in r for r in health["reasons"])


def test_starved_mock_degrades(tmp_path):
    write_run(tmp_path, SyntheticRun(steps=((5, 3.0),), mock_lateness_p99_ms=80.0))
    reasons = _health(tmp_path)["reasons"]
    assert any("the mock, not the target, was the bottleneck" in r for r in reasons)
    assert any("80.0 ms" in r for r in reasons)


def test_late_schedule_degrades(tmp_path):
    write_run(tmp_path, SyntheticRun(steps=((5, 3.0),), open_loop_rate=20, schedule_lag_ms=60))
    reasons = _health(tmp_path)["reasons"]
    assert any("schedule lag p99" in r for r in reasons)


def test_short_rate_degrades(tmp_path):
    write_run(tmp_path, SyntheticRun(steps=((5, 10.0),), open_loop_rate=20))
    meta = json.loads((tmp_path / "run.json").read_text())
    meta["scenario"] = "constant"
    meta["scenario_params"]["rate"] = 25  # asked 25, delivered 20: 20% short
    (tmp_path / "run.json").write_text(json.dumps(meta))
    reasons = _health(tmp_path)["reasons"]
    assert any("achieved 20.0 req/s against an asked 25.0 req/s (20% short" in r for r in reasons)
    meta["scenario_params"]["rate"] = 20.5  # within 5%
    (tmp_path / "run.json").write_text(json.dumps(meta))
    assert not _health(tmp_path)["degraded"]


def test_missing_records_degrade(tmp_path):
    write_run(tmp_path, SyntheticRun(steps=((5, 3.0),), targets=(SyntheticTarget("direct"),)))
    path = tmp_path / "records" / "direct.w1000.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-5]))  # within the in-flight allowance of 5 users
    assert not _health(tmp_path)["degraded"]
    path.write_bytes(b"".join(lines[:-6]))
    reasons = _health(tmp_path)["reasons"]
    assert any("records were lost" in r for r in reasons), reasons


def test_more_successes_than_the_mock_completed_degrades(tmp_path):
    write_run(tmp_path, SyntheticRun(steps=((5, 3.0),)))
    stats_path = tmp_path / "mock_stats" / "relay.json"
    stats = json.loads(stats_path.read_text())
    stats["completed"] -= 1
    stats_path.write_text(json.dumps(stats))
    reasons = _health(tmp_path)["reasons"]
    assert any(r.startswith("relay:") and "completed only" in r for r in reasons)


def test_short_rate_from_the_records_rate_column(tmp_path):
    # a rate-step run: the asked rate comes from each record's `rate`, not scenario_params
    write_run(tmp_path, SyntheticRun(steps=((5, 3.0),), open_loop_rate=20, scenario="step"))
    assert not _health(tmp_path)["degraded"]
    for path in (tmp_path / "records").glob("*.jsonl"):
        path.write_bytes(path.read_bytes().replace(b'"rate":20,', b'"rate":30,'))
    reasons = _health(tmp_path)["reasons"]
    assert sum("against an asked 30.0 req/s" in r for r in reasons) == 3


def test_a_short_poisson_run_is_not_blamed_for_its_own_dice(tmp_path):
    # 3 s at an asked 22 req/s: 66 expected, 60 sent — 9% short but within 2 sqrt(66) = 16
    write_run(tmp_path, SyntheticRun(steps=((5, 3.0),), open_loop_rate=20, scenario="poisson"))
    meta = json.loads((tmp_path / "run.json").read_text())
    meta["scenario_params"]["rate"] = 22
    (tmp_path / "run.json").write_text(json.dumps(meta))
    assert not _health(tmp_path)["degraded"]


def test_injected_faults_count_as_served_by_the_mock(tmp_path):
    """The mock counts a request ended by an injected fault as ``faulted``, not ``rejected``."""
    spec = SyntheticRun(steps=((5, 6.0),), error_rate=0.3, targets=(SyntheticTarget("direct"),))
    write_run(tmp_path, spec)
    stats_path = tmp_path / "mock_stats" / "direct.json"
    stats = json.loads(stats_path.read_text())
    assert stats["rejected"] > 5  # more than the in-flight allowance, or the test proves nothing
    stats["faulted"], stats["rejected"] = stats["rejected"], 0
    stats_path.write_text(json.dumps(stats))
    assert not _health(tmp_path)["degraded"]
    del stats["faulted"]
    stats_path.write_text(json.dumps(stats))
    assert any("records were lost" in r for r in _health(tmp_path)["reasons"])
