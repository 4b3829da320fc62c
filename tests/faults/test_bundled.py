"""The scorecard against the bundled relay: every scenario passes, and the files say so."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from relay.keys import create_key
from relaybench.faults.scenarios import SCENARIOS
from relaybench.procs import ServerProcess

from .conftest import Faults, by_name


def test_the_bundled_relay_scores_clean(faults: Faults, tmp_path: Path) -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    code, doc = faults()
    assert code == 0 and doc is not None
    results = by_name(doc)
    assert set(results) == set(SCENARIOS)  # the harness can run every scenario
    failed = {n: r for n, r in results.items() if r["verdict"] not in ("PASS", "INFO")}
    assert not failed
    totals = doc["totals"]
    assert totals["truncated_as_success"] == 0 and totals["duplicated_content"] == 0
    assert totals["failed"] == 0 and totals["scenarios"] == len(SCENARIOS)
    assert totals["cancel_propagation_ms"]["count"] == 2
    assert totals["cancel_propagation_ms"]["not_cancelled"] == 0
    # the longest wait for an error is the relay's own first-byte timeout (the hang scenario)
    assert totals["worst_hang_s"] == results["hang"]["figures"]["hang_s"]
    assert results["clean_stream"]["figures"]["byte_exact"] is True
    out = tmp_path / "scorecard"
    junit = ET.parse(out / "faults-junit.xml").getroot()
    assert junit.get("failures") == "0" and len(junit.findall("testcase")) == len(SCENARIOS)
    markdown = (out / "faults.md").read_text()
    assert "| truncated as success (must be 0) | 0 |" in markdown
    assert markdown.count("| PASS |") == len(SCENARIOS)
    assert "<h1>Fault scorecard: relay</h1>" in (out / "faults.html").read_text()
    # the mock and the three relays it started are gone
    left = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert not [pid for pid in left if psutil.pid_exists(pid)]


@pytest.fixture
def keyed_relay(mock_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A relay with auth on in front of the module's mock, and a key for it."""
    keys = tmp_path / "keys.json"
    key = create_key(keys, "unlimited")
    args = ["-m", "relay", "--host", "127.0.0.1", "--port", "0", "--upstream-url", mock_url]
    with ServerProcess("relay", [*args, "--keys-file", str(keys)]) as relay:
        yield relay.url, key


def test_an_external_relay_under_load_with_a_key_written_nowhere(
    faults: Faults, keyed_relay: tuple[str, str], mock_url: str, tmp_path: Path, capsys
) -> None:
    url, key = keyed_relay
    code, doc = faults(
        "--target",
        f"mine={url}",
        "--mock-url",
        mock_url,
        "--api-key",
        key,
        "--under-load",
        "3",
        "--scenarios",
        "cut,cancel_streaming,upstream_down,crlf",
    )
    assert code == 0 and doc is not None
    results = by_name(doc)
    assert results["cut"]["verdict"] == results["cancel_streaming"]["verdict"] == "PASS"
    for name in ("upstream_down", "crlf"):  # need the harness's own upstreams
        assert results[name]["verdict"] == "INFO" and results[name]["figures"]["skipped"]
    load = results["background_load"]
    assert load["verdict"] == "PASS" and load["figures"]["ok"] >= 3
    assert load["figures"]["failed"] == 0
    assert "--api-key ***" in doc["run"]["command"]
    for path in (tmp_path / "scorecard").iterdir():
        assert key not in path.read_text(), path.name
    assert key not in capsys.readouterr().out


def test_the_key_comes_from_the_environment(
    faults: Faults, keyed_relay: tuple[str, str], mock_url: str, monkeypatch
) -> None:
    url, key = keyed_relay
    monkeypatch.setenv("RELAYBENCH_API_KEY", key)
    code, doc = faults("--target", f"mine={url}", "--mock-url", mock_url, "--scenarios", "cut")
    assert code == 0 and doc is not None
    assert key not in str(doc)


def test_the_key_comes_from_a_file(
    faults: Faults, keyed_relay: tuple[str, str], mock_url: str, tmp_path: Path, monkeypatch
) -> None:
    url, key = keyed_relay
    monkeypatch.setenv("RELAYBENCH_API_KEY", "sk-not-this-one")  # the file comes first
    key_file = tmp_path / "key.txt"
    key_file.write_text(key + "\n")
    code, doc = faults(
        "--target", f"mine={url}", "--mock-url", mock_url, "--api-key-file", str(key_file),
        "--scenarios", "cut",
    )  # fmt: skip
    assert code == 0 and doc is not None
    assert f"--api-key-file {key_file}" in doc["run"]["command"]
    for path in (tmp_path / "scorecard").iterdir():
        assert key not in path.read_text(), path.name
