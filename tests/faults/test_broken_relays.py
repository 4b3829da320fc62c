"""Each planted relay defect is caught by the scenario meant for it, with the right total."""

from __future__ import annotations

import asyncio

import pytest

from relaybench.faults.client import Client
from relaybench.faults.mocklog import MockLog
from relaybench.faults.scenarios import SCENARIOS, Context
from relaybench.faults.wire import WireUpstream

from .conftest import Faults, by_name
from .proxies import STORM, ThreadServer, broken_relay


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
    doc = score(faults, mock_url, "cut_to_done", "cut,no_done,malformed")
    results = by_name(doc)
    assert results["clean_stream"]["verdict"] == "PASS"
    assert results["cut"]["verdict"] == "FAIL"
    assert "[DONE]" in results["cut"]["value"]
    # a proxy passes a clean end without [DONE] on as it came: complete-looking, a lie too
    assert results["no_done"]["verdict"] == "FAIL"
    assert "clean end, no error" in results["no_done"]["value"]
    # the malformed line is passed on for the client to see, content whole: honest
    assert results["malformed"]["verdict"] == "PASS"
    assert doc["totals"]["truncated_as_success"] == 2


def test_a_relay_without_idle_timeout_hangs_on_a_stall(faults: Faults, mock_url: str) -> None:
    doc = score(faults, mock_url, "hang_on_stall", "stall,hang,status_401")
    results = by_name(doc)
    assert results["hang"]["verdict"] == "FAIL" and "gave up" in results["hang"]["value"]
    # this proxy also passes upstream error bodies through: the 401's body reaches the client
    assert results["status_401"]["verdict"] == "FAIL"
    assert "the upstream's error body reached the client" in results["status_401"]["detail"]
    stall = results["stall"]
    assert stall["verdict"] == "FAIL"
    assert "gave up" in stall["value"]
    figures = stall["figures"]
    assert figures["gave_up"] is True
    # the wait since the last byte ran to the client's 3 s deadline (counted from the request)
    assert figures["hang_s"] + figures["last_byte_s"] >= 3.0 - 0.01
    assert doc["totals"]["worst_hang_s"] == results["hang"]["figures"]["hang_s"]
    assert doc["totals"]["worst_hang_gave_up"] is True


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


def test_retrying_every_error_at_once_is_a_storm(faults: Faults, mock_url: str) -> None:
    scenarios = "status_400,status_500,status_429_retry_after"
    results = by_name(score(faults, mock_url, "retry_storm", scenarios))
    attempts = 1 + STORM
    assert results["status_400"]["verdict"] == "FAIL"
    assert f"retried: {attempts} upstream attempts" in results["status_400"]["detail"]
    assert "a retry storm" in results["status_500"]["detail"]
    assert (
        "re-sent sooner than the upstream's Retry-After"
        in (results["status_429_retry_after"]["detail"])
    )


def test_a_first_token_timeout_tighter_than_the_model_cuts_slow_answers(
    faults: Faults, mock_url: str, start_server
) -> None:
    """The bundled relay itself, misconfigured: a 1 s first-token timeout fails a 3 s model."""
    relay = start_server(
        "relay",
        "--upstream-url",
        mock_url,
        "--auth",
        "off",
        "--first-token-timeout-ms",
        "1000",
        env={"RELAY_ANON_PLAN": "unlimited"},
    )
    code, doc = faults(
        "--target", f"tight={relay.url}", "--mock-url", mock_url, "--scenarios", "slow_first_token"
    )
    assert code == 1 and doc is not None
    slow = by_name(doc)["slow_first_token"]
    assert slow["verdict"] == "FAIL" and "504" in slow["value"]


def test_a_relay_decoding_each_read_breaks_split_characters() -> None:
    """The wire scenarios, against the scripted upstream through a plain and a mangling proxy."""

    async def score_wire(defect: str) -> dict[str, str]:
        upstream = await WireUpstream().start()
        try:
            with ThreadServer(broken_relay(upstream.url, defect)) as relay:
                client = Client(relay.url)
                ctx = Context(client, client, MockLog(relay.url), "t", 5.0, wire=client)
                names = ("utf8_split", "big_event", "crlf", "comments")
                return {n: (await SCENARIOS[n].run(ctx)).verdict for n in names}
        finally:
            await upstream.stop()

    assert asyncio.run(score_wire("hang_on_stall")) == dict.fromkeys(
        ("utf8_split", "big_event", "crlf", "comments"), "PASS"
    )
    mangled = asyncio.run(score_wire("mangle_utf8"))
    assert mangled["utf8_split"] == "FAIL"  # every split character became U+FFFD
    assert mangled["crlf"] == mangled["comments"] == "PASS"  # whole reads: nothing split there


def test_a_429_without_retry_after_retried_at_once_is_a_storm() -> None:
    async def score_429() -> dict:
        upstream = await WireUpstream().start()
        try:
            with ThreadServer(broken_relay(upstream.url, "retry_storm")) as relay:
                client = Client(relay.url)
                ctx = Context(client, client, MockLog(relay.url), "t", 5.0, wire=client)
                ctx.wire_server = upstream
                return (await SCENARIOS["status_429_no_retry_after"].run(ctx)).as_dict()
        finally:
            await upstream.stop()

    result = asyncio.run(score_429())
    assert result["verdict"] == "FAIL" and result["figures"]["attempts"] == 1 + STORM
    assert "a retry storm" in result["detail"]
