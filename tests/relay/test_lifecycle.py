"""Points 9 and 11: client disconnects close the upstream (no leak), request IDs, logs without
secrets, /health and /metrics, graceful shutdown, and the official openai SDK through the relay."""

from __future__ import annotations

import os
import signal
import socket
import time

import httpx
import openai
import orjson
import pytest


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()


def raw_request(url: str, body: bytes, headers: dict[str, str]) -> socket.socket:
    """Send a request on a raw socket (so the test can hang up whenever it likes)."""
    host, port = url.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)))
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    conn.sendall(
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{head}\r\n".encode()
        + body
    )
    return conn


@pytest.mark.parametrize("stream", [True, False])
def test_client_disconnect_closes_upstream_at_once(shared_relay, mock, kit, stream):
    server, key = shared_relay
    gone = kit.metric(server, "relay_client_disconnects_total")
    conn = raw_request(
        server.url,
        kit.chat(stream=stream),
        {"X-API-Key": key, "X-Mock-ITL-Ms": "50", "X-Mock-Output-Tokens": "200"},
    )
    if stream:
        assert conn.recv(4096).startswith(b"HTTP/1.1 200")  # streaming has begun
    assert wait_for(lambda: kit.mock_stats(mock)["requests"] == 1)
    time.sleep(0.1)
    conn.close()
    # 200 tokens x 50 ms = 10 s of generation: only a prompt close explains these.
    stats = wait_for(lambda: (s := kit.mock_stats(mock))["cancelled"] == 1 and s, timeout=2.0)
    assert stats and stats["active_streams"] == 0 and stats["completed"] == 0
    health = httpx.get(server.url + "/health").json()
    assert health["active_streams"] == 0
    assert kit.metric(server, "relay_client_disconnects_total") == gone + 1


def test_many_cancelled_requests_leak_nothing(shared_relay, mock, kit):
    server, key = shared_relay
    tasks_before = httpx.get(server.url + "/health").json()["tasks"]
    headers = {"X-API-Key": key, "X-Mock-ITL-Ms": "20", "X-Mock-Output-Tokens": "500"}
    conns = [raw_request(server.url, kit.chat(stream=i % 2 == 0), headers) for i in range(40)]
    # 20 streams and 20 whole answers, every one of them generating (500 x 20 ms = 10 s)
    assert wait_for(
        lambda: (s := kit.mock_stats(mock))["requests"] == 40 and s["active_streams"] == 20
    )
    time.sleep(0.1)
    for conn in conns:
        conn.close()
    stats = wait_for(lambda: (s := kit.mock_stats(mock))["cancelled"] == 40 and s, timeout=5.0)
    assert stats and stats["active_streams"] == 0
    health = wait_for(
        lambda: (h := httpx.get(server.url + "/health").json())["active_streams"] == 0 and h
    )
    assert health["upstream_pool"]["busy"] == 0  # nothing held by a forgotten response
    assert health["tasks"] <= tasks_before  # no watcher or reader task left behind
    # The relay still works normally afterwards.
    response = httpx.post(
        server.url + "/v1/chat/completions", content=kit.chat(), headers={"X-API-Key": key}
    )
    assert kit.sse_data(response.content)[-1] == "[DONE]"


def test_request_id_echoed_generated_and_logged_without_secrets(start_server, mock, keys_file):
    from relay.keys import create_key

    key = create_key(keys_file, "pro")
    server = start_server(
        "relay",
        "--upstream-url",
        mock.url,
        "--keys-file",
        str(keys_file),
        env={"RELAY_LOG_LEVEL": "info", "RELAY_UPSTREAM_API_KEY": "sk-upstream-secret-xyz"},
    )
    secret_prompt = "my very private prompt text 7f3a"
    body = orjson.dumps({"messages": [{"role": "user", "content": secret_prompt}], "stream": True})
    url = server.url + "/v1/chat/completions"
    given = httpx.post(url, content=body, headers={"X-API-Key": key, "X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = httpx.post(url, content=body, headers={"X-API-Key": key})
    assert len(made.headers["x-request-id"]) == 32
    for bad_id in ("has spaces<script>", "x" * 200):
        unsafe = httpx.post(url, content=body, headers={"X-API-Key": key, "X-Request-ID": bad_id})
        assert len(unsafe.headers["x-request-id"]) == 32  # replaced, not echoed
    httpx.post(url, content=body, headers={"X-API-Key": "rk-wrong-key-value"})
    lines = wait_for(lambda: [line for line in server.output if "abc-123" in line])
    entry = orjson.loads(lines[0])
    assert entry["request_id"] == "abc-123" and entry["status"] == 200
    assert entry["principal"].startswith("key:") and entry["tokens"] == 8
    everything = "\n".join(server.output)
    for secret in (key, secret_prompt, "sk-upstream-secret-xyz", "rk-wrong-key-value"):
        assert secret not in everything


def test_health_and_metrics(relay, make_key, kit):
    key = make_key()
    server = relay()
    httpx.post(server.url + "/v1/chat/completions", content=kit.chat(), headers={"X-API-Key": key})
    httpx.post(server.url + "/v1/chat/completions", content=kit.chat(), headers={})
    health = httpx.get(server.url + "/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    samples = kit.metrics(server)
    chat = "/v1/chat/completions"
    expected = {
        ("relay_requests_total", frozenset({"route": chat, "status": "200"}.items())): 1,
        ("relay_requests_total", frozenset({"route": chat, "status": "401"}.items())): 1,
        ("relay_requests_total", frozenset({"route": "/health", "status": "200"}.items())): 1,
        ("relay_active_streams", frozenset()): 0,
        ("relay_upstream_first_byte_seconds_bucket", frozenset({"le": "+Inf"}.items())): 1,
        ("relay_upstream_first_byte_seconds_count", frozenset()): 1,
        ("relay_rate_limited_total", frozenset()): 0,
    }
    for series, value in expected.items():
        assert samples[series] == value, series
    completion = [v for (name, labels), v in samples.items() if name == "relay_tokens_total"]
    assert completion and 8 in completion


def test_graceful_shutdown_finishes_short_streams_and_cuts_long_ones(relay, make_key, kit):
    key = make_key()
    server = relay(env={"RELAY_GRACE_MS": "2000"})  # the short stream needs ~0.3 s
    url = server.url + "/v1/chat/completions"
    short = {"X-API-Key": key, "X-Mock-ITL-Ms": "50", "X-Mock-Output-Tokens": "6"}
    long = {"X-API-Key": key, "X-Mock-ITL-Ms": "50", "X-Mock-Output-Tokens": "400"}
    with (
        httpx.stream("POST", url, content=kit.chat(), headers=short) as quick,
        httpx.stream("POST", url, content=kit.chat(), headers=long) as slow,
    ):
        assert quick.status_code == slow.status_code == 200
        started = time.perf_counter()
        os.kill(server.pid, signal.SIGTERM)
        quick_body = quick.read()
        slow_body = slow.read()
        cut_after = time.perf_counter() - started
    assert kit.sse_data(quick_body)[-1] == "[DONE]"  # finished within the grace period
    data = kit.sse_data(slow_body)
    assert "[DONE]" not in data
    assert orjson.loads(data[-1])["error"]["code"] == "shutting_down"
    assert len(data) - 1 < 400  # cut well before its 400 tokens (20 s at 50 ms each) were out
    assert cut_after >= 2.0 - 0.01  # but only after the 2 s grace
    assert server.proc.wait(5) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/health")


def test_sigint_exits_zero(relay):
    server = relay()
    os.kill(server.pid, signal.SIGINT)
    assert server.proc.wait(5) == 0
    assert [line for line in server.output if "listening on" in line] == [
        f"listening on {server.url}"
    ]


def test_openai_sdk_streams_through_the_relay(shared_relay):
    server, key = shared_relay
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len(pieces) >= 8 and "".join(pieces).strip()
    with pytest.raises(openai.AuthenticationError):
        bad = openai.OpenAI(base_url=server.url + "/v1", api_key="rk-bad", max_retries=0)
        bad.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    answer = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert answer.usage.completion_tokens == 8


def test_workers_share_one_port_and_stop_together(relay, redis_url):
    server = relay("--workers", "2", "--auth", "off", env={"RELAY_REDIS_URL": redis_url})
    pids = {httpx.get(server.url + "/health").json()["pid"] for _ in range(40)}
    assert len(pids) == 2 and server.pid in pids
    (child,) = pids - {server.pid}
    os.kill(server.pid, signal.SIGTERM)
    assert server.proc.wait(8) == 0
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_upstream_connections_are_reused(relay, make_key, kit):
    key = make_key()
    server = relay()
    url = server.url + "/v1/chat/completions"
    for _ in range(15):
        response = httpx.post(url, content=kit.chat(), headers={"X-API-Key": key})
        assert kit.sse_data(response.content)[-1] == "[DONE]"
    assert httpx.get(server.url + "/health").json()["upstream_pool"] == {
        "total": 1,
        "idle": 1,
        "busy": 0,
    }
