"""/metrics served by prometheus_client: it parses, the counters and the TTFB histogram count
requests, the pool and stream gauges follow a held stream, and process metrics are there."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from relay.metrics import Metrics

CHAT = "/v1/chat/completions"


def test_the_text_parses_and_has_every_family(shared_relay):
    server, _ = shared_relay
    response = httpx.get(server.url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    for name, kind in (
        ("relay_requests", "counter"),
        ("relay_active_streams", "gauge"),
        ("relay_upstream_first_byte_seconds", "histogram"),
        ("relay_rate_limited", "counter"),
        ("relay_ratelimit_backend_errors", "counter"),
        ("relay_upstream_errors", "counter"),
        ("relay_upstream_retries", "counter"),
        ("relay_client_disconnects", "counter"),
        ("relay_tokens", "counter"),
        ("relay_upstream_pool_connections", "gauge"),
        ("process_cpu_seconds", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
    ):
        assert families[name].type == kind, name
    states = {s.labels["state"] for s in families["relay_upstream_pool_connections"].samples}
    assert states == {"total", "idle", "busy"}
    assert families["process_resident_memory_bytes"].samples[0].value > 1e6


def test_counters_and_the_ttfb_histogram_count_requests(shared_relay, kit):
    server, key = shared_relay
    ok = ("relay_requests_total", frozenset({"route": CHAT, "status": "200"}.items()))
    count = ("relay_upstream_first_byte_seconds_count", frozenset())
    before = kit.metrics(server)
    with httpx.Client() as client:
        for _ in range(5):
            response = client.post(
                server.url + CHAT, content=kit.chat(), headers={"X-API-Key": key}
            )
            assert kit.sse_data(response.content)[-1] == "[DONE]"
        refused = client.post(server.url + CHAT, content=kit.chat(), headers={})
        assert refused.status_code == 401
    after = kit.metrics(server)
    assert after[ok] - before.get(ok, 0) == 5
    denied = ("relay_requests_total", frozenset({"route": CHAT, "status": "401"}.items()))
    assert after[denied] - before.get(denied, 0) == 1
    assert after[count] - before.get(count, 0) == 5  # one observation per streamed request
    buckets = sorted(
        (float(dict(labels)["le"]), value)
        for (name, labels), value in after.items()
        if name == "relay_upstream_first_byte_seconds_bucket"
    )
    assert buckets[0][0] == 0.001 and buckets[-2][0] == 30.0 and buckets[-1][0] == float("inf")
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert buckets[-1][1] == after[count]
    assert after[("relay_upstream_first_byte_seconds_sum", frozenset())] > 0
    cpu = ("process_cpu_seconds_total", frozenset())
    assert after[cpu] >= before[cpu] > 0


def test_stream_and_pool_gauges_follow_a_held_stream(shared_relay, kit):
    server, key = shared_relay
    slow = {"X-API-Key": key, "X-Mock-ITL-Ms": "100", "X-Mock-Output-Tokens": "10"}
    busy = ("relay_upstream_pool_connections", frozenset({"state": "busy"}.items()))
    idle = ("relay_upstream_pool_connections", frozenset({"state": "idle"}.items()))
    active = ("relay_active_streams", frozenset())
    with httpx.stream("POST", server.url + CHAT, content=kit.chat(), headers=slow) as response:
        assert response.status_code == 200
        during = kit.metrics(server)
        response.read()
    assert during[active] == 1 and during[busy] == 1
    after = kit.metrics(server)
    assert after[active] == 0 and after[busy] == 0 and after[idle] >= 1


def test_each_relay_has_its_own_registry():
    first, second = Metrics(), Metrics()
    first.requests.labels("/health", "200").inc()
    first.add_usage('jwt:a"b\\c', {"completion_tokens": 3, "prompt_tokens": True})
    parsed = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for text in (first.render(), second.render())
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
        if s.name.startswith("relay_")
    }
    assert parsed[("relay_requests_total", (("route", "/health"), ("status", "200")))] == 1
    labels = (("kind", "completion"), ("principal", 'jwt:a"b\\c'))  # escaped and read back
    assert parsed[("relay_tokens_total", labels)] == 3
    assert not any(name == "relay_tokens_total" and "prompt" in str(lab) for name, lab in parsed)
    families = {f.name: f for f in text_string_to_metric_families(second.render().decode())}
    assert families["relay_requests"].samples == []  # the first relay's count is not here


def test_workers_answer_for_all_of_them(relay, kit):
    """With --workers 2 a scrape reaches either worker (SO_REUSEPORT, a new connection each
    time); every answer counts the requests of both, and the live gauges add up."""
    server = relay("--workers", "2", "--auth", "off", env={"RELAY_ANON_PLAN": "unlimited"})
    ok = ("relay_requests_total", frozenset({"route": CHAT, "status": "200"}.items()))
    count = ("relay_upstream_first_byte_seconds_count", frozenset())
    active = ("relay_active_streams", frozenset())
    served_by = set()
    for _ in range(12):  # one connection each: the kernel spreads them over both workers
        with httpx.Client() as client:
            response = client.post(server.url + CHAT, content=kit.chat())
            assert kit.sse_data(response.content)[-1] == "[DONE]"
            served_by.add(client.get(server.url + "/health").json()["pid"])
    assert len(served_by) == 2  # both workers served requests
    answers = []
    for _ in range(10):
        with httpx.Client() as client:
            answers.append((client.get(server.url + "/health").json()["pid"], kit.metrics(server)))
    assert {s[ok] for _, s in answers} == {12} and {s[count] for _, s in answers} == {12}
    # Held streams (20 s each, cut when the test hangs up), two on each worker (a connection's
    # /health names the worker its next request goes to).
    slow = {"X-Mock-ITL-Ms": "200", "X-Mock-Output-Tokens": "100"}
    held: list[tuple[httpx.Client, object]] = []
    on: Counter[int] = Counter()
    try:
        for _ in range(40):
            if all(on[pid] == 2 for pid in served_by):
                break
            client = httpx.Client()
            pid = client.get(server.url + "/health").json()["pid"]
            if on[pid] == 2:
                client.close()
                continue
            stream = client.stream("POST", server.url + CHAT, content=kit.chat(), headers=slow)
            held.append((client, stream))
            assert stream.__enter__().status_code == 200
            on[pid] += 1
        assert on == dict.fromkeys(served_by, 2)
        # One kept-alive connection asks one worker, which copies its own count as it answers;
        # the other worker is never asked, so only its periodic refresh (LIVE_REFRESH_S, later
        # on a busy machine) can bring its two: wait for it, bounded.
        with httpx.Client() as probe:
            deadline = time.monotonic() + 5.0
            while live_count(probe, server, active)[1] != 4:
                assert time.monotonic() < deadline, "the other worker's streams never counted"
                time.sleep(0.05)
        # From then on every answer, from either worker, counts all four.
        later = []
        while len(later) < 6 or (len({pid for pid, _ in later}) < 2 and len(later) < 40):
            with httpx.Client() as client:  # a new connection each: either worker
                later.append(live_count(client, server, active))
        assert len({pid for pid, _ in later}) == 2  # both workers answered
        assert {count for _, count in later} == {4}, later
    finally:
        for client, stream in held:
            stream.__exit__(None, None, None)
            client.close()
    families = {
        f.name for f in text_string_to_metric_families(httpx.get(server.url + "/metrics").text)
    }
    assert "process_cpu_seconds" not in families  # one worker's would pose as the relay's


def live_count(client: httpx.Client, server, series: tuple) -> tuple[int, float]:
    """Over one connection (so one worker): that worker's pid and its answer for ``series``."""
    pid = client.get(server.url + "/health").json()["pid"]
    text = client.get(server.url + "/metrics").text
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return pid, samples[series]


def test_the_shared_metrics_directory_is_made_and_removed(relay, tmp_path):
    import glob
    import tempfile

    pattern = str(Path(tempfile.gettempdir()) / "relay-metrics-*")
    before = set(glob.glob(pattern))
    server = relay("--workers", "2", "--auth", "off", env={"RELAY_ANON_PLAN": "unlimited"})
    made = set(glob.glob(pattern)) - before
    assert len(made) == 1 and any(Path(next(iter(made))).glob("*.db"))
    server.stop()
    assert not (set(glob.glob(pattern)) - before)


def test_the_relay_command_imports_prometheus_client_only_after_choosing_its_mode():
    """prometheus_client fixes single- or multi-process values at import: relay.cli must not
    import it (directly or through another module) before main() has set the directory."""
    code = "import sys, relay.cli; print('prometheus_client' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
