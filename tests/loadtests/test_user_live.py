"""The load generator's client path against a real mock: token timing and every fault form."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

PROBE = Path(__file__).with_name("probe.py")
ITL_MS = 40  # the probe asks for 20 tokens: the mock's last deadline is 19 x 40 ms after its first


def probe(url: str, *headers: dict[str, str], timeout: float = 5.0, stream: bool = True) -> list:
    argv = [sys.executable, str(PROBE), url, str(timeout), "stream" if stream else "buffered"]
    argv += [orjson.dumps(h).decode() for h in headers]
    done = subprocess.run(argv, capture_output=True, timeout=60, check=True)
    return orjson.loads(done.stdout)


def test_streaming_records_against_the_mock(start_server) -> None:
    mock = start_server(
        "mock_upstream", "--ttft-ms", "150", "--itl-ms", str(ITL_MS), "--output-from-max-tokens"
    )
    (rec,) = probe(mock.url, {})
    assert rec["ok"] and rec["error"] is None and rec["status"] == 200
    assert rec["content_chunks"] == 20 == rec["usage_tokens"] == rec["output_tokens"]
    assert len(rec["chunks_ms"]) == len(rec["lags_ms"]) == len(rec["mock_stamps_ns"]) == 20
    # the mock's emission of each content chunk, in ms after our send (its stamps, our send time)
    emitted = [(ns - rec["start_ns"]) / 1e6 for ns in rec["mock_stamps_ns"]]
    # TTFT is the first non-empty content chunk: the mock stamped it after its 150 ms TTFT (its
    # role chunk goes at once, before it), and TTFT is that chunk's arrival
    assert emitted[0] >= 150 - 1 and rec["ttft_ms"] == rec["chunks_ms"][0]
    for at, stamp, lag in zip(rec["chunks_ms"], emitted, rec["lags_ms"], strict=True):
        assert at >= stamp - 1  # timed on arrival, after the mock sent it (two clocks: 1 ms)
        assert abs(at - stamp - lag) < 1  # the chunk's time and its lag tell the same story
    # the mock's grid, by its own stamps: chunk i is due at admission + 150 + ITL i ms (deadlines
    # chain from admission, not from the first write, so a late first chunk is followed by a
    # short gap) and is never written ahead of it; admission comes after our send
    assert all(e >= 150 + ITL_MS * i - 1 for i, e in enumerate(emitted)), emitted
    # ... reaches the client token by token, not held until the end: the first chunk is read
    # before the mock even stamps the last (>= 19 x 40 ms later by its chained deadlines), which a
    # client that buffers the body fails and a pause of the probe or the mock under ~760 ms does not
    assert rec["chunks_ms"][0] < emitted[-1], (rec["chunks_ms"], emitted)
    # each lag is the chunk's arrival after its stamp: never (much) before it, and never more
    # than the whole request lasted (a unit or clock mix-up breaks that bound)
    assert all(-5 < lag <= rec["e2e_ms"] for lag in rec["lags_ms"]), rec["lags_ms"]
    assert rec["headers_ms"] <= rec["ttft_ms"] <= rec["e2e_ms"]


def test_non_streaming_records_against_the_mock(start_server) -> None:
    mock = start_server(
        "mock_upstream", "--ttft-ms", "100", "--itl-ms", "5", "--output-from-max-tokens"
    )
    (rec,) = probe(mock.url, {}, stream=False)
    assert rec["ok"] and rec["stream"] is False
    assert rec["ttft_ms"] == rec["e2e_ms"] >= 100 + 19 * 5 - 5
    assert rec["output_tokens"] == 20 and len(rec["lags_ms"]) == 1


def test_every_fault_form_maps_to_its_error_type(start_server) -> None:
    mock = start_server(
        "mock_upstream", "--ttft-ms", "20", "--itl-ms", "5", "--output-from-max-tokens"
    )
    faults = ["status:429", "status:500", "status:404", "disconnect-after:3", "malformed-after:2"]
    recs = probe(mock.url, *({"X-Mock-Fault": f} for f in faults))
    got = [(r["error"], r["status"], r["ok"]) for r in recs]
    assert got == [
        ("http_429", 429, False),
        ("http_5xx", 500, False),
        ("http_4xx", 404, False),
        ("truncated", 200, False),
        ("malformed", 200, False),
    ]
    assert recs[3]["content_chunks"] == 3  # what arrived before the cut is kept
    assert recs[4]["content_chunks"] == 20  # the stream went on after the bad line


def test_a_stalled_stream_times_out(start_server) -> None:
    mock = start_server("mock_upstream", "--ttft-ms", "20", "--itl-ms", "5")
    (rec,) = probe(mock.url, {"X-Mock-Fault": "stall-after:2"}, timeout=0.5)
    assert (rec["error"], rec["status"], rec["content_chunks"]) == ("timeout", 200, 2)
    assert 400 <= rec["e2e_ms"] - rec["chunks_ms"][-1] <= 3000


def test_refused_connection_is_connect(start_server) -> None:
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (rec,) = probe(f"http://127.0.0.1:{port}", {}, timeout=2)
    assert (rec["error"], rec["status"], rec["ok"]) == ("connect", None, False)
