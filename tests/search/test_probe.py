"""Judging a probe folder: health before the SLOs, with the real health checks' reasons."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaybench.search.bracket import HARNESS_BOUND, MOCK_BOUND
from relaybench.search.probe import evaluate
from relaybench.search.slo import FAIL, PASS, SLO
from reports.synthetic import SyntheticRun, write_run

SLO_1S = SLO(ttft_p95_ms=1000, error_rate=0.05)


def probe_folder(path: Path, **spec) -> Path:
    write_run(path, SyntheticRun(steps=((10, 6.0),), seed=3, **spec))
    return path


def test_a_healthy_probe_is_judged_on_its_slos(tmp_path: Path) -> None:
    run = probe_folder(tmp_path / "ok")
    result = evaluate(run, "direct", 10, 6.0, SLO_1S)
    assert result.verdict == PASS and not result.reasons
    assert {c.metric for c in result.checks} == {"ttft_ms.p95", "error_rate"}
    assert result.stats["requests"] > 0 and result.health["degraded"] is False
    strict = evaluate(run, "direct", 10, 6.0, SLO(ttft_p95_ms=50))
    assert strict.verdict == FAIL


@pytest.mark.parametrize(
    ("spec", "verdict", "words"),
    [
        ({"loadgen_cpu_pct": 99.0}, HARNESS_BOUND, "load generator's CPU"),
        ({"mock_lateness_p99_ms": 60.0}, MOCK_BOUND, "the mock emitted chunks late"),
    ],
)
def test_a_degraded_probe_is_never_a_pass_or_a_fail(
    tmp_path: Path, spec: dict, verdict: str, words: str
) -> None:
    run = probe_folder(tmp_path / "bad", **spec)
    result = evaluate(run, "direct", 10, 6.0, SLO_1S)
    assert result.verdict == verdict
    assert any(words in reason for reason in result.reasons)
    assert not result.checks  # not judged at all


def test_requests_the_probes_end_cut_off_are_not_errors(tmp_path: Path) -> None:
    import orjson

    run = probe_folder(tmp_path / "cut")
    files = sorted((run / "records").glob("direct.*.jsonl"))
    first = orjson.loads(files[0].read_bytes().splitlines()[0])
    # 8 cut off at the end (within the health check's in-flight allowance): 6% "errors" of 120
    with files[0].open("ab") as out:
        for k in range(8):
            cut = {**first, "seq": 10_000 + k, "ok": False, "error": "interrupted"}
            out.write(orjson.dumps(cut) + b"\n")
    result = evaluate(run, "direct", 10, 6.0, SLO_1S)
    assert result.verdict == PASS, result.reasons
    error_rate = next(c for c in result.checks if c.metric == "error_rate")
    assert error_rate.value == 0
