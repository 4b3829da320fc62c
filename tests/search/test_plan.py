"""The capacity plan: the same replicas from a search folder as from a step run at the same loads,
and a plan that does not mislead (its peak's source, bounds as bounds, short steps flagged)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reports.capacity import PlanInput
from reports.folder import load_folder
from reports.pipeline import analyse
from reports.search import search_plan
from reports.synthetic import SyntheticRun, write_run
from reports.tables import plan_sentences
from reports.timeseries import per_step

SLO_MS, SLO_ERRORS = 1000.0, 0.05
STEPS = tuple((u, 20.0) for u in (5, 10, 15, 20, 25, 30, 40))


def step_run(path: Path, *, steps=STEPS, knee: int | None = 20, tokens: int = 16) -> Path:
    spec = SyntheticRun(scenario="step", steps=steps, knee_users=knee, tokens=tokens, seed=5)
    write_run(path, spec)
    return path


def as_search(run: Path) -> dict:
    """A search.json whose probes measured exactly what the step run's steps did."""
    probes = []
    for r in per_step(load_folder(run)).query("target == 'relay'").itertuples():
        meets = bool(r.ttft_p95 <= SLO_MS and r.error_rate <= SLO_ERRORS)
        probes.append(
            {
                "load": float(r.users),
                "seconds": float(r.seconds),
                "role": "bracket",
                "verdict": "pass" if meets else "fail",
                "counted": "pass" if meets else "fail",
                "checks": [
                    {
                        "metric": "ttft_ms.p95",
                        "value": r.ttft_p95,
                        "low": r.ttft_p95_low,
                        "high": r.ttft_p95_high,
                    }
                ],
                "stats": {
                    "requests_per_s": r.rps,
                    "ok_rps": r.ok_rps,
                    "output_tokens_per_s": r.tokens_per_s,
                    "error_rate": r.error_rate,
                    "e2e_ms": {"mean": r.e2e_mean_ms},
                    "ttft_ms": {"p50": r.ttft_p50, "p95": r.ttft_p95, "p99": r.ttft_p99},
                    "in_flight_cap": r.users,
                },
            }
        )
    slo = {"ttft_p95_ms": SLO_MS, "error_rate": SLO_ERRORS}
    target = {"slo": slo, "status": "found", "probes": probes, "message": "found"}
    return {"kind": "search", "axis": "users", "unit": "users", "targets": {"relay": target}}


@pytest.fixture(scope="module")
def knee_run(tmp_path_factory) -> Path:
    return step_run(tmp_path_factory.mktemp("step"))


def test_a_search_folder_plans_the_same_replicas_as_the_equivalent_step_run(knee_run) -> None:
    inp = PlanInput(slo_ttft_p95_ms=SLO_MS, slo_error_rate=SLO_ERRORS, peak_rps=400.0)
    from_steps = analyse(knee_run, inp).plan
    from_search = search_plan(as_search(knee_run), "relay", inp)
    assert from_search["capacity"]["users"] == from_steps["capacity"]["users"]
    assert from_search["capacity"]["ok_rps"] == from_steps["capacity"]["ok_rps"]
    assert from_search["replicas"]["replicas"] == from_steps["replicas"]["replicas"] > 1
    assert from_search["replicas"]["source"] == from_steps["replicas"]["source"] == "given"


def test_plan_cli_on_a_search_folder_matches_the_step_run(knee_run, tmp_path: Path) -> None:
    folder = tmp_path / "search"
    folder.mkdir()
    (folder / "search.json").write_text(json.dumps(as_search(knee_run)))
    plans = []
    for path, slo in (
        (knee_run, ["--slo-ttft-p95-ms", "1000", "--slo-error-rate", "0.05"]),
        (folder, []),
    ):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "relaybench",
                "plan",
                str(path),
                "--peak-rps",
                "400",
                *slo,
                "--json",
            ],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        plans.append(json.loads(done.stdout))
    assert plans[0]["replicas"]["replicas"] == plans[1]["replicas"]["replicas"]
    priced = subprocess.run(
        [
            sys.executable,
            "-m",
            "relaybench",
            "plan",
            str(folder),
            "--peak-rps",
            "400",
            "--replica-cost",
            "75",
        ],
        capture_output=True,
        text=True,
    )
    assert priced.returncode == 0, priced.stderr
    assert "× $75.00 per replica-month (--replica-cost)" in priced.stdout
    assert (
        json.loads((folder / "plan.json").read_text())["replicas"]["replica_cost_per_month"] == 75
    )


def test_every_step_meeting_the_slo_is_a_bound_and_the_runs_own_peak_is_labelled(
    tmp_path: Path,
) -> None:
    run = step_run(tmp_path / "flat", steps=((5, 20.0), (10, 20.0)), knee=None)
    plan = analyse(run, PlanInput(peak_multiple=10.0, slo_error_rate=SLO_ERRORS)).plan
    rep = plan["replicas"]
    assert rep["bound"] == "at_most" and rep["source"] == "run"
    text = "\n".join(plan_sentences(plan))
    assert f"**at most {rep['replicas']}**" in text
    assert "at least 10 users" in text
    assert "this run's own busiest 10 s" in text and "not your traffic's peak" in text
    assert text.index("A bound, not a measurement") < text.index("Target `relay`")


def test_steps_shorter_than_a_few_request_times_are_flagged_first(tmp_path: Path) -> None:
    # 100 tokens x 20 ms: each request lasts ~2.2 s, each step 3 s (less than 3 of them)
    run = step_run(tmp_path / "short", steps=((5, 3.0), (10, 3.0), (40, 3.0)), tokens=100)
    plan = analyse(run, PlanInput(peak_rps=100.0, slo_error_rate=SLO_ERRORS)).plan
    assert any(s["short"] for s in plan["steps"])
    assert plan["flags"][0].startswith("Not a steady-state figure")
    assert plan_sentences(plan)[0].startswith("⚠ Not a steady-state figure")


def test_replica_cost_and_example_prices(knee_run) -> None:
    inp = PlanInput(slo_error_rate=SLO_ERRORS, peak_rps=400.0, replica_cost=120.0)
    plan = analyse(knee_run, inp).plan
    rep = plan["replicas"]
    assert rep["infrastructure_per_month"] == pytest.approx(rep["replicas"] * 120.0)
    text = "\n".join(plan_sentences(plan))
    assert "per replica-month (--replica-cost)" in text
    from reports.tables import cost_rows, cost_sentence

    header, _ = cost_rows(plan)
    assert "example relay $/month" in header
    assert "example reseller price list" in cost_sentence(plan)
