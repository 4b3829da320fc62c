"""bench-relay's nginx reference: configured and stopped by PID, unbuffered, CPU counted; and the
relay-versus-nginx figures (medians, spreads, ratios, target verdicts) from synthetic runs."""

from __future__ import annotations

import time

import httpx
import orjson
import psutil
import pytest

from relaybench.errors import UsageError
from relaybench.run.bench_relay import compare_levels, ratio, relay_targets, spread
from relaybench.run.nginx import Nginx, nginx_binary
from relaybench.sse import SSEDecoder

TOKENS = 20  # at 40 ms ITL the mock's last deadline is 19 x 40 ms after its first
BODY = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True})
SHORT = orjson.dumps({**orjson.loads(BODY), "max_tokens": 6})  # for the CPU load, ~220 ms each


@pytest.fixture
def nginx(start_server):
    try:
        nginx_binary()
    except UsageError:
        pytest.skip("nginx is not installed (tools/ensure_binaries.py installs it)")
    mock = start_server(
        "mock_upstream",
        "--ttft-ms",
        "20",
        "--itl-ms",
        "40",
        "--output-tokens",
        str(TOKENS),
        "--output-from-max-tokens",
    )
    server = Nginx(mock.url)
    server.start()
    yield server
    server.stop()


def test_nginx_passes_each_chunk_on_as_it_comes_and_counts_its_cpu(nginx):
    cpu_before = nginx.cpu_seconds()
    arrivals: list[tuple[int, int]] = []  # (arrival ns, the mock's emission stamp ns)
    decoder = SSEDecoder()
    with httpx.stream("POST", nginx.url + "/v1/chat/completions", content=BODY) as response:
        assert response.status_code == 200
        for raw in response.iter_raw():
            now = time.time_ns()
            for event in decoder.feed(raw):
                if event.data != "[DONE]":
                    stamp = orjson.loads(event.data).get("x_mock_emitted_ns")
                    if stamp:
                        arrivals.append((now, stamp))
    assert len(arrivals) >= TOKENS
    # Unbuffered: the first chunk reaches the client before the mock even stamps the last one.
    # The mock's deadlines are chained from admission (a late chunk never moves a later
    # deadline), so its last stamp is >= admission + 20 + 19 x 40 ms: a proxy that holds the
    # stream until it ends fails this, a pause of one process (mock, nginx or this client)
    # shorter than ~760 ms does not.
    first_arrived = arrivals[0][0]
    last_emitted = max(stamp for _, stamp in arrivals)
    assert first_arrived < last_emitted
    for _ in range(20):
        httpx.post(nginx.url + "/v1/chat/completions", content=SHORT).raise_for_status()
    assert nginx.cpu_seconds() >= cpu_before


def test_stop_ends_the_master_and_its_workers(nginx):
    master = psutil.Process(nginx.proc.pid)
    processes = [master, *master.children(recursive=True)]
    assert len(processes) == 2  # one master, one worker
    nginx.stop()
    _, alive = psutil.wait_procs(processes, timeout=5)
    assert not alive
    assert nginx.cpu_seconds() == 0.0


def test_a_bad_upstream_is_a_usage_error():
    with pytest.raises(UsageError, match="http://host:port"):
        Nginx("https://127.0.0.1")


def run(level: int, relay_ttft: float, nginx_ttft: float, cpu: tuple[float, float]) -> dict:
    return {
        "streams": level,
        "added_ttft_ms": {"p50": relay_ttft, "p99": relay_ttft * 3},
        "added_chunk_lag_ms": {"p50": 0.2, "p99": 1.5},
        "nginx": {
            "added_ttft_ms": {"p50": nginx_ttft, "p99": nginx_ttft * 3},
            "added_chunk_lag_ms": {"p50": 0.1, "p99": -0.2},
        },
        "cpu_per_chunk_us": {"relay": cpu[0], "nginx": cpu[1]},
    }


def test_medians_spreads_ratios_and_targets_from_runs():
    rows = [
        run(100, 0.9, 0.1, (50.0, 40.0)),
        run(100, 2.0, 0.2, (60.0, 30.0)),
        run(100, 0.5, 0.3, (55.0, None)),  # a run without nginx chunks is left out of its median
        run(10, 0.4, 0.1, (70.0, 20.0)),
    ]
    (ten, hundred) = compare_levels(rows)
    assert ten["streams"] == 10 and hundred["runs"] == 3
    ttft = hundred["figures"]["added TTFT p50"]
    assert ttft["relay"] == {"median": 0.9, "min": 0.5, "max": 2.0, "runs": 3}
    assert ttft["ratio"] == pytest.approx(0.9 / 0.2, abs=0.01)
    cpu = hundred["figures"]["CPU per chunk"]
    assert cpu["nginx"]["runs"] == 2 and cpu["ratio"] == pytest.approx(55 / 35, abs=0.01)
    assert hundred["figures"]["added chunk lag p99"]["ratio"] is None  # nginx's is not > 0
    verdicts = dict(relay_targets(hundred))
    assert verdicts == {
        "relay CPU per chunk <= 1.5x nginx's": "MISSED",  # 1.57x
        "added TTFT p50 <= 1 ms": "met",
        "added TTFT p99 <= 5 ms": "met",  # 2.7 ms
        "added chunk lag p99 <= 2 ms": "met",
    }
    assert spread([None, None]) is None and ratio(None, None) is None
