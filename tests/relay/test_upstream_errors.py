"""Points 6, 7, 8: honest statuses before the first byte, SSE error lines after it, retries
before the first byte only, and the three timeouts.

Timing is checked the way a busy machine cannot break: the error code proves which timeout
fired (the mock would otherwise have answered in full), and a lower bound proves the relay
waited what it was told; no upper wall-clock bound (a loaded CI runner only adds time).
A test that expects no timeout runs on a relay whose timeouts are seconds longer than any
gap it causes, so a process descheduled for half a second cannot fire one."""

from __future__ import annotations

import socket
import time

import httpx
import orjson
import pytest

from .conftest import bare_relay

UPSTREAM_SECRET = "sk-provider-secret-never-shown-0123456789"
IDLE_MS = 1500


def no_retries(first_token_ms: int, idle_ms: int) -> dict[str, str]:
    return {
        "RELAY_MAX_RETRIES": "0",
        "RELAY_FIRST_TOKEN_TIMEOUT_MS": str(first_token_ms),
        "RELAY_IDLE_TIMEOUT_MS": str(idle_ms),
        "RELAY_UPSTREAM_API_KEY": UPSTREAM_SECRET,
    }


@pytest.fixture(scope="module")
def server(start_shared, shared_mock):
    """No retries, a short first-token timeout: for the tests that expect it to fire."""
    return bare_relay(start_shared, shared_mock.url, no_retries(400, 5000))


@pytest.fixture(scope="module")
def patient(start_shared, shared_mock):
    """No retries, 5 s timeouts: each mapping is seen on its own, never a timeout instead."""
    return bare_relay(start_shared, shared_mock.url, no_retries(5000, 5000))


@pytest.fixture(scope="module")
def idle_relay(start_shared, shared_mock):
    """No retries, a 1.5 s idle timeout (and 5 s to the first token): for stalls and gaps."""
    return bare_relay(start_shared, shared_mock.url, no_retries(5000, IDLE_MS))


def post(server, kit, headers, stream=True):
    return httpx.post(
        server.url + "/v1/chat/completions",
        content=kit.chat(stream=stream),
        headers=headers,
        timeout=10,
    )


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize(
    "upstream, status, code",
    [
        (429, 429, "upstream_rate_limited"),
        (500, 502, "upstream_server_error"),
        (502, 502, "upstream_server_error"),
        (503, 503, "upstream_unavailable"),
        (401, 502, "upstream_auth_failed"),
        (403, 502, "upstream_auth_failed"),
        (400, 400, "upstream_refused"),
    ],
)
def test_upstream_status_mapping(patient, kit, stream, upstream, status, code):
    response = post(patient, kit, {"X-Mock-Fault": f"status:{upstream}"}, stream)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    assert UPSTREAM_SECRET not in response.text
    assert UPSTREAM_SECRET[-8:] not in response.text
    if upstream == 429:
        assert response.headers["retry-after"] == "1"  # the mock's, passed on
    if upstream in (401, 403):
        assert error["message"] == "the relay's upstream credentials failed"


def test_connect_error_is_502(start_server, kit):
    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    relay = bare_relay(start_server, url)
    response = post(relay, kit, {})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_connect_error"


def test_connect_timeout_is_504(start_server, kit):
    """A listener whose accept queue is full: SYNs are dropped, connect() hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.1)
        relay = bare_relay(
            start_server,
            f"http://127.0.0.1:{port}",
            {"RELAY_MAX_RETRIES": "0", "RELAY_CONNECT_TIMEOUT_MS": "300"},
        )
        started = time.perf_counter()
        response = post(relay, kit, {})
        elapsed = time.perf_counter() - started
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_connect_timeout"
    assert elapsed >= 0.3 - 0.01  # waited the configured 300 ms


def test_first_token_timeout_is_504(server, kit):
    started = time.perf_counter()
    response = post(server, kit, {"X-Mock-TTFT-Ms": "3000"})
    elapsed = time.perf_counter() - started
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_first_token_timeout"  # not the 3 s answer
    assert elapsed >= 0.4 - 0.01  # waited the configured 400 ms


def test_first_token_timeout_non_stream(server, kit):
    response = post(server, kit, {"X-Mock-TTFT-Ms": "3000"}, stream=False)
    assert response.status_code == 504


def _events_and_tail(response: httpx.Response, kit) -> tuple[list[str], dict]:
    data = kit.sse_data(response.content)
    return data, orjson.loads(data[-1])


@pytest.mark.parametrize(
    "fault, code",
    [
        ("disconnect-after:3", "upstream_cut"),
        ("stall-after:3", "upstream_idle_timeout"),
        ("malformed-after:3", "upstream_malformed"),
    ],
)
def test_mid_stream_failure_ends_with_error_line_and_no_done(request, kit, fault, code):
    server = request.getfixturevalue("idle_relay" if fault.startswith("stall") else "patient")
    started = time.perf_counter()
    response = post(server, kit, {"X-Mock-Fault": fault})
    elapsed = time.perf_counter() - started
    assert response.status_code == 200  # the stream had started
    data, tail = _events_and_tail(response, kit)
    assert "[DONE]" not in data
    assert tail["error"]["code"] == code
    assert tail["error"]["type"] == "upstream_error"
    content = [orjson.loads(d) for d in data[:-1]]
    assert len(content) >= 3 and all("choices" in c for c in content)
    if fault.startswith("stall"):  # the stall never ends: only the 1.5 s idle timeout ends it
        assert elapsed >= IDLE_MS / 1000 - 0.01


def test_idle_gap_below_timeout_is_fine(idle_relay, kit):
    """Gaps of 300 ms under a 1.5 s idle timeout, in a stream longer than the timeout: the
    timeout is per gap, not per stream."""
    sent_ns = time.time_ns()
    response = post(idle_relay, kit, {"X-Mock-ITL-Ms": "300", "X-Mock-Output-Tokens": "7"})
    data = kit.sse_data(response.content)
    assert data[-1] == "[DONE]"
    # The mock emits on deadlines (TTFT + k x ITL): its last chunk came >= 1.8 s after sending.
    last_ns = orjson.loads(data[-2])["x_mock_emitted_ns"]
    assert last_ns - sent_ns > IDLE_MS * 1_000_000


def test_keepalive_comments_while_waiting_for_first_token(start_server, mock, kit):
    relay = start_server(
        "relay",
        "--upstream-url",
        mock.url,
        "--auth",
        "off",
        "--keepalive-ms",
        "100",
        env={"RELAY_ANON_PLAN": "unlimited", "RELAY_FIRST_TOKEN_TIMEOUT_MS": "2500"},
    )
    # 800 ms to the first token (8 comments due, missed ones are caught up), 1.7 s under the
    # first-token timeout.
    response = post(relay, kit, {"X-Mock-TTFT-Ms": "800"})
    body = response.content
    assert response.status_code == 200
    head = body[: body.index(b"data:")]
    assert head.count(b": keep-alive\n\n") >= 3
    assert kit.sse_data(body)[-1] == "[DONE]"

    # Once comments went out the status is sent: a first-token timeout becomes the error line.
    response = post(relay, kit, {"X-Mock-TTFT-Ms": "30000"})
    assert response.status_code == 200
    data = kit.sse_data(response.content)
    assert len(data) == 1 and "[DONE]" not in data
    assert orjson.loads(data[0])["error"]["code"] == "upstream_first_token_timeout"
    assert response.content.count(b": keep-alive") >= 6  # 25 due in 2.5 s
    assert wait_idle(mock)  # the upstream request was closed (its first token is 30 s away)


def wait_idle(mock, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(mock.url + "/mock/stats").json()["active_streams"] == 0:
            return True
        time.sleep(0.05)
    return False


def test_retries_before_first_byte_then_success_or_honest_failure(start_server, mock, kit):
    relay = bare_relay(start_server, mock.url)
    httpx.post(mock.url + "/mock/reset")
    response = post(relay, kit, {"X-Mock-Fault": "status:503"})
    assert response.status_code == 503
    assert httpx.get(mock.url + "/mock/stats").json()["requests"] == 3  # 1 + 2 retries
    assert kit.metric(relay, "relay_upstream_retries_total") == 2
    assert kit.metric(relay, "relay_upstream_errors_total", kind="status_503") == 1

    # 400 is not retryable
    httpx.post(mock.url + "/mock/reset")
    assert post(relay, kit, {"X-Mock-Fault": "status:400"}).status_code == 400
    assert httpx.get(mock.url + "/mock/stats").json()["requests"] == 1

    # Never after bytes were sent: a cut stream is not retried.
    httpx.post(mock.url + "/mock/reset")
    response = post(relay, kit, {"X-Mock-Fault": "disconnect-after:2"})
    assert "[DONE]" not in kit.sse_data(response.content)
    assert httpx.get(mock.url + "/mock/stats").json()["requests"] == 1


def test_retry_after_honoured_up_to_cap(start_server, mock, kit):
    relay = bare_relay(
        start_server, mock.url, {"RELAY_MAX_RETRIES": "1", "RELAY_RETRY_AFTER_CAP_MS": "1500"}
    )
    httpx.post(mock.url + "/mock/reset")
    started = time.perf_counter()
    response = post(relay, kit, {"X-Mock-Fault": "status:429"})
    elapsed = time.perf_counter() - started
    assert response.status_code == 429 and response.headers["retry-after"] == "1"
    assert httpx.get(mock.url + "/mock/stats").json()["requests"] == 2  # retried once
    assert elapsed >= 1.0 - 0.01  # after waiting the mock's Retry-After (1 s)

    # A mock asking for 6 s, over the cap: the relay answers at once, neither retrying nor
    # waiting first (honouring the wait would take >= 6 s, so the bound has seconds of margin).
    patient_mock = start_server("mock_upstream", "--retry-after-s", "6")
    capped = bare_relay(
        start_server,
        patient_mock.url,
        {"RELAY_MAX_RETRIES": "3", "RELAY_RETRY_AFTER_CAP_MS": "1500"},
    )
    started = time.perf_counter()
    response = post(capped, kit, {"X-Mock-Fault": "status:429"})
    capped_s = time.perf_counter() - started
    assert response.status_code == 429 and response.headers["retry-after"] == "6"
    assert httpx.get(patient_mock.url + "/mock/stats").json()["requests"] == 1  # over the cap
    assert capped_s < 4.0  # and no wait


def test_retry_deadline_bounds_total_time(start_server, kit):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    relay = bare_relay(
        start_server,
        url,
        {
            "RELAY_MAX_RETRIES": "50",
            "RELAY_RETRY_BASE_MS": "100",
            "RELAY_RETRY_DEADLINE_MS": "2000",
        },
    )
    response = post(relay, kit, {})
    assert response.status_code == 502
    retries = kit.metric(relay, "relay_upstream_retries_total")
    # Waits of 50-100, 100-200, 200-400, 400-800, 800-1600 ms...: the first retry is due
    # within 100 ms (1.9 s before the deadline), a sixth could start after 3.15 s at the
    # earliest; the 2 s deadline stops it long before 50.
    assert 1 <= retries <= 5
