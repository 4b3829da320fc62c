"""The scorecard's totals and files from hand-made results (no servers)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import orjson

from relaybench.faults.cli import redacted
from relaybench.faults.client import Seen
from relaybench.faults.scenarios import FAIL, INFO, PASS, Result, same_bytes
from relaybench.faults.scorecard import headline, totals, write
from relaybench.sse import SSEDecoder

RUN = {
    "started_at": "2026-12-01T00:00:00+00:00",
    "duration_s": 1.5,
    "command": "relaybench faults",
    "target": {"name": "r<1>", "url": "http://127.0.0.1:1"},
    "mock_url": "http://127.0.0.1:2",
    "under_load": 0,
    "interrupted": False,
}


def results() -> list[Result]:
    return [
        Result("clean_stream", PASS, "ok"),
        Result("cut", FAIL, "5 chunks, then [DONE]", "lie", {"truncated": True, "hang_s": 0.1}),
        Result("stall", FAIL, "gave up", "", {"hang_s": 7.5, "gave_up": True}),
        Result("hang", PASS, "504 after 5 s", "", {"hang_s": 5.0}),
        Result("cancel_streaming", PASS, "", "", {"cancel_ms": 2.0}),
        Result("cancel_waiting", FAIL, "", "", {"cancel_ms": None, "cancel_ms_at_least": 5000.0}),
        Result("duplicate_after_retry", FAIL, "", "", {"duplicated": True}),
        Result("crlf", INFO, "skipped", "needs the harness", {"skipped": True}),
    ]


def test_totals_count_each_headline() -> None:
    t = totals(results())
    assert (t["passed"], t["failed"], t["info"]) == (3, 4, 1)
    assert t["truncated_as_success"] == 1 and t["duplicated_content"] == 1
    assert t["worst_hang_s"] == 7.5 and t["worst_hang_gave_up"] is True
    # a request never cancelled counts as the watch time, and is flagged as a lower bound
    assert t["cancel_propagation_ms"] == {
        "count": 2,
        "p50": 2501.0,
        "max": 5000.0,
        "not_cancelled": 1,
    }
    words = dict(headline({"totals": t}))
    assert words["worst hang"] == "7.50 s or more (the client gave up waiting)"
    assert words["cancel propagation p50 / max"].endswith("(at least: some never ended)")


def test_no_results_give_empty_totals() -> None:
    t = totals([])
    assert t["worst_hang_s"] is None and t["cancel_propagation_ms"]["p50"] is None


def test_the_four_files(tmp_path: Path) -> None:
    write(tmp_path, results(), RUN)
    doc = orjson.loads((tmp_path / "faults.json").read_bytes())
    assert doc["schema_version"] == 1 and len(doc["scenarios"]) == 8
    assert doc["scenarios"][1]["title"] == "stream cut after 5 chunks"
    suite = ET.parse(tmp_path / "faults-junit.xml").getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("8", "4", "1")
    cut = suite.find("testcase[@name='cut']")
    assert cut is not None and cut.find("failure").get("message") == "5 chunks, then [DONE]"
    html = (tmp_path / "faults.html").read_text()
    assert "r&lt;1&gt;" in html and "r<1>" not in html  # everything escaped
    md = (tmp_path / "faults.md").read_text()
    assert "| FAIL | stream cut after 5 chunks | 5 chunks, then [DONE] | lie |" in md


def test_the_key_is_redacted_from_the_command_line() -> None:
    argv = ["--api-key", "sk-1", "--out", "x"]
    assert redacted(argv, "sk-1") == "relaybench faults --api-key *** --out x"
    assert redacted(["--api-key=sk-1"], "sk-1") == "relaybench faults --api-key=***"
    assert redacted(["--api-key-file", "k.txt"], "sk-1") == "relaybench faults --api-key-file k.txt"


def seen_stream(body: bytes, end: str) -> Seen:
    seen = Seen(status=200, headers={"content-type": "text/event-stream"}, end=end)
    seen.body += body
    seen.events = SSEDecoder().feed(body)
    return seen


CHUNK = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'


def test_what_a_client_takes_for_a_complete_answer() -> None:
    assert seen_stream(CHUNK + b"data: [DONE]\n\n", "complete").looks_complete
    assert seen_stream(CHUNK, "complete").looks_complete  # EOF, no error: SDKs accept it
    assert not seen_stream(CHUNK, "cut").looks_complete
    error = b'data: {"error":{"code":"upstream_cut"}}\n\n'
    assert not seen_stream(CHUNK + error, "complete").looks_complete
    assert seen_stream(CHUNK + error, "complete").content == "hi"


def test_byte_identical_streams_ignore_only_per_request_values() -> None:
    a = b'data: {"id":"chatcmpl-mock01","created":1,"x_mock_emitted_ns":5,"c":"x"}\n\n'
    b = b'data: {"id":"chatcmpl-mock02","created":2,"x_mock_emitted_ns":6,"c":"x"}\n\n'
    assert same_bytes(a, b)
    assert not same_bytes(a, b.replace(b"\n\n", b"\r\n\r\n"))  # re-framed: same events only
    assert not same_bytes(a, b.replace(b'"x"', b'"y"'))


def test_no_file_holds_a_hidden_string(tmp_path: Path) -> None:
    echoed = [Result("status_401", PASS, "HTTP 401 'invalid key sk-9'", "said sk-9", {})]
    doc = write(tmp_path, echoed, {**RUN, "command": "relaybench faults"}, hide=["sk-9"])
    assert doc["scenarios"][0]["value"] == "HTTP 401 'invalid key ***'"
    for path in tmp_path.iterdir():
        assert "sk-9" not in path.read_text(), path.name


def test_credentials_in_urls_are_redacted_from_the_command_line() -> None:
    argv = ["--target", "r=https://me:pw-123@relay.example:8443/v1", "--mock-url", "http://a:b@m"]
    assert redacted(argv, None) == (
        "relaybench faults --target r=https://***@relay.example:8443/v1 --mock-url http://***@m"
    )


def test_the_html_page_has_a_row_per_scenario_and_escapes_what_a_relay_said(
    tmp_path: Path,
) -> None:
    said = [*results(), Result("status_401", FAIL, "HTTP 401 '<script>x()</script>'", "<i>", {})]
    write(tmp_path, said, {**RUN, "interrupted": True})
    html = (tmp_path / "faults.html").read_text()
    assert html.count('<td class="FAIL">FAIL</td>') == 5
    assert html.count('<td class="PASS">PASS</td>') == 3
    assert "&lt;script&gt;x()&lt;/script&gt;" in html and "<script>" not in html
    assert "&lt;i&gt;" in html and "<i>" not in html
    assert "Interrupted: partial scorecard." in html
    assert "1.5 s, started 2026-12-01T00:00:00+00:00" in html
    assert "<th>truncated as success (must be 0)</th><td>1</td>" in html
