import json
import shutil

import numpy as np
import pytest

from relaybench.errors import UsageError
from reports.capacity import PlanInput, kneedle, load_prices
from reports.pipeline import analyse
from reports.tables import cost_sentence

from .conftest import KNEE_USERS


def test_kneedle_finds_the_corner_of_a_hockey_stick():
    x = np.array([1, 2, 3, 4, 5, 6, 7, 8], dtype=float)
    y = np.array([100, 101, 99, 100, 102, 150, 200, 250], dtype=float)
    assert kneedle(x, y) == 5.0
    assert kneedle(x, np.full(8, 100.0)) is None  # flat: no knee
    assert kneedle(x[:2], y[:2]) is None


@pytest.fixture(scope="module")
def planned(step_run):
    inp = PlanInput(slo_ttft_p95_ms=1000.0, slo_error_rate=0.05, peak_rps=400.0, headroom=0.3)
    return analyse(step_run, inp).plan


def test_capacity_on_a_known_knee(planned):
    assert planned["target"] == "relay"
    assert planned["knee"] == KNEE_USERS
    cap = planned["capacity"]
    # p95 of a lognormal(sigma .25) TTFT is ~1.5x the median: 200 ms up to 20 users, then
    # +40 ms/user -> 25 users ~600 ms, 30 users ~1000 ms (borderline), 40 users ~1500 ms.
    assert cap["users"] in (25.0, 30.0)
    assert cap["users_plausible"] >= cap["users"] >= (cap["users_confident"] or 0)
    steps = {s["users"]: s for s in planned["steps"]}
    assert not steps[40.0]["meets_slo"]
    # Little's law: throughput peaks at the knee, 20 users / ~0.5 s = ~40 req/s
    assert cap["users_at_max_throughput"] == KNEE_USERS
    assert 34 < cap["ok_rps"] < 46
    assert cap["tokens_per_s"] == pytest.approx(cap["ok_rps"] * 16, rel=0.05)


def test_replicas_littles_law_and_cost(planned):
    rep = planned["replicas"]
    usable = planned["capacity"]["ok_rps"] * 0.7
    assert rep["replicas"] == int(np.ceil(400.0 / usable))
    assert all(row["consistent"] for row in planned["littles_law"])
    cost = planned["cost"]
    assert cost["requests_per_day"] == round(400 * 0.35 * 86400)
    gpt = next(m for m in cost["models"] if m["model"] == "GPT-4.1")
    # 12.096M req/day x (500 in x $2 + 16 out x $8) / 1M tokens
    assert gpt["direct_per_day"] == pytest.approx(12_096_000 * (500 * 2 + 16 * 8) / 1e6, rel=1e-6)
    assert gpt["direct_per_month"] == pytest.approx(gpt["direct_per_day"] * 30, rel=1e-6)
    assert {m["model"] for m in cost["models"]} == {
        "GPT-4.1", "Claude Sonnet 4.5", "Gemini 2.5 Flash", "DeepSeek V3.2"
    }  # fmt: skip


def test_peak_multiple_uses_todays_peak(step_run):
    plan = analyse(step_run, PlanInput(peak_multiple=10.0, slo_error_rate=0.05)).plan
    rep = plan["replicas"]
    assert rep["peak_rps"] == pytest.approx(10 * rep["today"], rel=1e-6)
    assert 30 < rep["today"] < 50


def test_bad_price_table_is_a_usage_error(tmp_path):
    bad = tmp_path / "prices.toml"
    bad.write_text('[models."X"]\ndirect_input = 1\n')
    with pytest.raises(UsageError, match="lacks a number for direct_output"):
        load_prices(bad)
    bad.write_text("not = [toml")
    with pytest.raises(UsageError, match="cannot read the price table"):
        load_prices(bad)


def test_plan_json_round_trips(planned):
    json.dumps(planned, allow_nan=False)


def test_cost_takes_the_measured_prompt_size_unless_one_is_given(planned, step_run, tmp_path):
    assert planned["cost"]["input_tokens_per_request"] == 500  # no prompt sizes recorded
    assert planned["cost"]["input_tokens_source"] == "default"
    folder = tmp_path / "run"
    shutil.copytree(step_run, folder)
    for path in (folder / "records").glob("*.jsonl"):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        for i, row in enumerate(rows):
            row["prompt_tokens"] = 1000 + 400 * (i % 2)  # a trace's prompts: 1,000 and 1,400
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    inp = PlanInput(slo_ttft_p95_ms=1000.0, slo_error_rate=0.05, peak_rps=400.0)
    cost = analyse(folder, inp).plan["cost"]
    assert cost["input_tokens_source"] == "measured"
    assert 1150 < cost["input_tokens_per_request"] < 1250
    gpt = next(m for m in cost["models"] if m["model"] == "GPT-4.1")
    per_day = (
        cost["requests_per_day"]
        * (cost["input_tokens_per_request"] * 2 + cost["output_tokens_per_request"] * 8)
        / 1e6
    )
    assert gpt["direct_per_day"] == pytest.approx(per_day, rel=1e-3)
    given = analyse(folder, PlanInput(peak_rps=400.0, input_tokens=300)).plan["cost"]
    assert (given["input_tokens_per_request"], given["input_tokens_source"]) == (300, "given")
    assert "300 input (--input-tokens)" in cost_sentence({"cost": given})
    assert "the records' mean prompt" in cost_sentence({"cost": cost})
