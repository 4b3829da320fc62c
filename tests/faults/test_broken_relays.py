"""Each planted relay defect is caught by the scenario meant for it, with the right total."""

from __future__ import annotations

import pytest

from .conftest import Faults, by_name
from .proxies import ThreadServer, broken_relay


def score(faults: Faults, mock_url: str, defect: str, scenarios: str) -> dict:
    with ThreadServer(broken_relay(mock_url, defect)) as relay:
        code, doc = faults(
            "--target",
            f"broken={relay.url}",
            "--mock-url",
            mock_url,
            "--scenarios",
            scenarios,
            "--max-hang-s",
            "3",
        )
    assert code == 1 and doc is not None
    return doc


def test_a_cut_passed_off_as_done_is_truncated_as_success(faults: Faults, mock_url: str) -> None:
    doc = score(faults, mock_url, "cut_to_done", "cut")
    results = by_name(doc)
    assert results["clean_stream"]["verdict"] == "PASS"
    assert results["cut"]["verdict"] == "FAIL"
    assert "[DONE]" in results["cut"]["value"]
    assert doc["totals"]["truncated_as_success"] == 1


def test_a_relay_without_idle_timeout_hangs_on_a_stall(faults: Faults, mock_url: str) -> None:
    doc = score(faults, mock_url, "hang_on_stall", "stall")
    stall = by_name(doc)["stall"]
    assert stall["verdict"] == "FAIL"
    assert "gave up" in stall["value"]
    figures = stall["figures"]
    assert figures["gave_up"] is True
    # the wait since the last byte ran to the client's 3 s deadline (counted from the request)
    assert figures["hang_s"] + figures["last_byte_s"] >= 3.0 - 0.01
    assert doc["totals"]["worst_hang_s"] == stall["figures"]["hang_s"]


def test_a_retry_after_the_first_byte_duplicates_content(faults: Faults, mock_url: str) -> None:
    doc = score(faults, mock_url, "retry_after_bytes", "duplicate_after_retry")
    dup = by_name(doc)["duplicate_after_retry"]
    assert dup["verdict"] == "FAIL"
    assert dup["figures"]["attempts"] == 2 and dup["figures"]["duplicated"] is True
    assert doc["totals"]["duplicated_content"] >= 1


def test_a_relay_that_ignores_disconnects_keeps_the_upstream_busy(
    faults: Faults, mock_url: str
) -> None:
    doc = score(faults, mock_url, "ignore_disconnect", "cancel_streaming,cancel_waiting")
    results = by_name(doc)
    for name in ("cancel_streaming", "cancel_waiting"):
        assert results[name]["verdict"] == "FAIL", results[name]
        assert "still generating" in results[name]["value"]
    assert doc["totals"]["cancel_propagation_ms"]["not_cancelled"] == 2


@pytest.mark.parametrize("defect", ["cut_to_done", "retry_after_bytes", "ignore_disconnect"])
def test_each_defect_leaves_the_clean_stream_clean(
    faults: Faults, mock_url: str, defect: str
) -> None:
    """The suite blames the defect, not the proxy: a clean stream through it still passes."""
    with ThreadServer(broken_relay(mock_url, defect)) as relay:
        code, doc = faults(
            "--target",
            f"broken={relay.url}",
            "--mock-url",
            mock_url,
            "--scenarios",
            "clean_stream",
        )
    assert code == 0 and doc is not None
    assert [e["verdict"] for e in doc["scenarios"]] == ["PASS"]
