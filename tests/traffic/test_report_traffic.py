"""The report's trace and chat tables, from small frames built here."""

from __future__ import annotations

import numpy as np
import pandas as pd

from reports.traffic import arrivals_per_bin, by_turn

T0 = 1_700_000_000_000_000_000


def test_arrivals_asked_vs_achieved() -> None:
    intended = T0 + (np.arange(30) * 1e9 / 3).astype(np.int64)  # 3/s for 10 s
    sent = intended + np.where(np.arange(30) < 27, 1_000_000, 2_000_000_000)  # 3 sent 2 s late
    rows = pd.DataFrame({"intended_ns": intended, "start_ns": sent})
    t = arrivals_per_bin(rows, T0, bin_s=5.0)
    assert t["t_s"].tolist() == [0.0, 5.0, 10.0]
    assert t["asked_per_s"].tolist() == [3.0, 3.0, 0.0]
    assert t["achieved_per_s"].tolist() == [3.0, 2.4, 0.6]  # the late three land in the next bin
    assert t["achieved_per_s"].sum() * 5 == 30


def test_arrivals_ignore_closed_loop_rows() -> None:
    rows = pd.DataFrame({"intended_ns": [None, None], "start_ns": [T0, T0 + 1]})
    assert arrivals_per_bin(rows, T0).empty


def test_by_turn() -> None:
    rows = pd.DataFrame(
        {
            "turn": [0, 0, 1, 1, 2, None],
            "ok": [True, True, True, False, True, True],
            "ttft_ms": [10.0, 20.0, 30.0, None, 50.0, 99.0],
            "e2e_ms": [100.0, 200.0, 300.0, 5.0, 500.0, 999.0],
            "prompt_tokens": [50, 70, 150, 160, 300, 1],
        }
    )
    t = by_turn(rows)
    assert t["turn"].tolist() == [0, 1, 2]
    assert t["requests"].tolist() == [2, 2, 1]  # failed ones count, rows without a turn do not
    assert t["ttft_p50_ms"].tolist() == [15.0, 30.0, 50.0]  # successful requests only
    assert t["e2e_p50_ms"].tolist() == [150.0, 300.0, 500.0]
    assert t["prompt_tokens_p50"].tolist() == [60.0, 155.0, 300.0]
    assert by_turn(rows[rows["turn"].isna()]).empty
