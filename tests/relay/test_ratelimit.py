"""Point 3: GCRA limits per key / per IP, concurrent bursts, the streams cap, two relays sharing
one real Redis (exact admission), and Redis down (fail open / closed, never a hang)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter

import httpx
import pytest

from relay.keys import create_key
from relay.ratelimit import RedisBackend, gcra_step


def burst(urls: list[str], n: int, headers: dict, body: bytes) -> list[httpx.Response]:
    """n concurrent requests, spread round-robin over urls; all in flight at once."""

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=n + 10)
        async with httpx.AsyncClient(limits=limits, timeout=20) as client:
            gate = asyncio.Event()

            async def one(i: int) -> httpx.Response:
                await gate.wait()
                url = urls[i % len(urls)] + "/v1/chat/completions"
                return await client.post(url, content=body, headers=headers)

            tasks = [asyncio.create_task(one(i)) for i in range(n)]
            await asyncio.sleep(0.05)
            gate.set()
            return await asyncio.gather(*tasks)

    return asyncio.run(run())


def test_gcra_burst_admits_exactly_the_limit_then_one_per_interval():
    tat = None
    now = 1_000_000_000
    admitted = 0
    for _ in range(100):
        decision, new_tat = gcra_step(tat, now, 30)
        if decision.allowed:
            admitted += 1
            tat = new_tat
            assert decision.remaining == 30 - admitted
        else:
            assert decision.retry_after_s == pytest.approx(2.0)  # 60 s / 30
    assert admitted == 30
    assert not gcra_step(tat, now + 1_999_999, 30)[0].allowed
    assert gcra_step(tat, now + 2_000_000, 30)[0].allowed


@pytest.mark.parametrize("rpm", [7, 13, 30, 1000, 7919, 100_000])
def test_gcra_exact_for_awkward_rates(rpm):
    tat, admitted = None, 0
    now = 1_763_000_000_000_000  # a real Unix time in µs: the magnitude Redis works at
    for _ in range(rpm * 2):
        decision, new_tat = gcra_step(tat, now, rpm)
        if decision.allowed:
            admitted, tat = admitted + 1, new_tat
    assert admitted == rpm


def test_redis_scripts_count_and_peek_like_the_python_gcra(redis_url):
    """The hit and the read-only peek share one Lua prelude: a drained key peeks as drained."""

    async def run():
        backend = RedisBackend(redis_url, 0.5)
        try:
            fresh = await backend.peek("k", 6)
            hits = [await backend.hit("k", 6) for _ in range(7)]
            return fresh, hits, await backend.peek("k", 6)
        finally:
            await backend.close()

    fresh, hits, drained = asyncio.run(run())
    assert (fresh.allowed, fresh.remaining, fresh.retry_after_s) == (True, 6, 0.0)
    assert [h.allowed for h in hits] == [True] * 6 + [False]
    assert [h.remaining for h in hits[:6]] == [5, 4, 3, 2, 1, 0]
    assert not drained.allowed and drained.remaining == 0
    assert 0 < drained.retry_after_s <= 10.0  # one interval at 6 per minute
    assert drained.retry_after_s <= hits[-1].retry_after_s  # the same wait, a moment later


def test_memory_limit_under_concurrent_burst(relay, keys_file, kit):
    key = create_key(keys_file, "tiny", {"tiny": {"rpm": 10, "max_streams": 0}})
    server = relay()
    responses = burst([server.url], 40, {"X-API-Key": key}, kit.chat(stream=False))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 10, 429: 30}
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(refused.headers["retry-after"]) <= 6  # next slot in 60/10 s
    assert refused.headers["x-ratelimit-limit"] == "10"
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert int(refused.headers["x-ratelimit-reset"]) > 0
    ok = [r for r in responses if r.status_code == 200]
    assert sorted(int(r.headers["x-ratelimit-remaining"]) for r in ok) == list(range(10))
    assert "relay_rate_limited_total 30" in httpx.get(server.url + "/metrics").text


def test_limits_are_per_key(relay, keys_file, kit):
    plan = {"tiny": {"rpm": 3, "max_streams": 0}}
    first, second = create_key(keys_file, "tiny", plan), create_key(keys_file, "tiny", plan)
    server = relay()
    for key in (first, second):
        statuses = [
            httpx.post(
                server.url + "/v1/chat/completions",
                content=kit.chat(stream=False),
                headers={"X-API-Key": key},
            ).status_code
            for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 429]


def test_per_ip_limit_when_auth_is_off(relay, keys_file, kit):
    create_key(keys_file, "anon", {"anon": {"rpm": 4, "max_streams": 0}})
    server = relay("--auth", "off", "--keys-file", str(keys_file), "--anon-plan", "anon")
    responses = burst([server.url], 12, {}, kit.chat(stream=False))
    assert Counter(r.status_code for r in responses) == {200: 4, 429: 8}


def wait_streams_gone(server, timeout: float = 5.0) -> bool:
    """Bounded: the relay has noticed the hung-up streams (its slots are freed with them)."""
    deadline = time.monotonic() + timeout
    while httpx.get(server.url + "/health").json()["active_streams"]:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_concurrent_streams_cap(relay, keys_file, kit):
    key = create_key(keys_file, "two", {"two": {"rpm": 1000, "max_streams": 2}})
    server = relay()
    # 20 s streams (cut when the test hangs up): still open whenever the third request lands.
    slow = {"X-API-Key": key, "X-Mock-ITL-Ms": "100", "X-Mock-Output-Tokens": "200"}
    url = server.url + "/v1/chat/completions"
    with (
        httpx.stream("POST", url, content=kit.chat(), headers=slow) as one,
        httpx.stream("POST", url, content=kit.chat(), headers=slow) as two,
    ):
        assert one.status_code == two.status_code == 200
        third = httpx.post(url, content=kit.chat(), headers={"X-API-Key": key})
        assert third.status_code == 429
        assert third.json()["error"]["code"] == "too_many_concurrent_requests"
        assert third.headers["retry-after"] == "1"
    assert wait_streams_gone(server)
    after = httpx.post(url, content=kit.chat(), headers={"X-API-Key": key})
    assert after.status_code == 200  # the slots were released


def test_concurrency_refusals_leave_the_minute_budget_intact(relay, keys_file, kit):
    key = create_key(keys_file, "basic")  # 30 per minute, 5 at once
    server = relay()
    url = server.url + "/v1/chat/completions"
    # 20 s streams (cut when the test hangs up): all five open through the 20 refusals.
    slow = {"X-API-Key": key, "X-Mock-ITL-Ms": "100", "X-Mock-Output-Tokens": "200"}
    with httpx.Client() as client:
        streams = [client.stream("POST", url, content=kit.chat(), headers=slow) for _ in range(5)]
        opened = [stream.__enter__() for stream in streams]
        try:
            assert all(response.status_code == 200 for response in opened)
            charged = int(opened[-1].headers["x-ratelimit-remaining"])
            assert charged >= 25  # 30 a minute, 5 used (one more back every 2 s)
            for _ in range(20):
                refused = client.post(url, content=kit.chat(), headers={"X-API-Key": key})
                assert refused.status_code == 429
                assert refused.json()["error"]["code"] == "too_many_concurrent_requests"
                assert refused.headers["retry-after"] == "1"
                assert refused.headers["x-ratelimit-limit"] == "30"
                assert int(refused.headers["x-ratelimit-remaining"]) >= charged  # nothing used
                assert int(refused.headers["x-ratelimit-reset"]) > 0
        finally:
            for stream in streams:
                stream.__exit__(None, None, None)
        assert wait_streams_gone(server)
        after = client.post(url, content=kit.chat(stream=False), headers={"X-API-Key": key})
    assert after.status_code == 200
    assert int(after.headers["x-ratelimit-remaining"]) >= charged - 1  # only this one charged


def test_errors_before_streaming_carry_the_rate_limit_headers(relay, keys_file, kit):
    key = create_key(keys_file, "pro")
    server = relay("--max-retries", "0")
    url = server.url + "/v1/chat/completions"
    invalid = httpx.post(url, content=b'{"messages": []}', headers={"X-API-Key": key})
    assert invalid.status_code == 400
    assert invalid.headers["x-ratelimit-limit"] == "100"
    assert invalid.headers["x-ratelimit-remaining"] == "100"  # refused before any charge
    failed = httpx.post(
        url, content=kit.chat(), headers={"X-API-Key": key, "X-Mock-Fault": "status:500"}
    )
    assert failed.status_code == 502
    assert failed.headers["x-ratelimit-limit"] == "100"
    assert failed.headers["x-ratelimit-remaining"] == "99"  # this one was charged


def test_two_relays_share_one_redis_exactly(relay, keys_file, redis_url, kit):
    # rpm 10: the burst is exact while it lasts under one GCRA interval (6 s), which a
    # descheduled process cannot stretch it to (at rpm 25 it was 2.4 s).
    key = create_key(keys_file, "shared", {"shared": {"rpm": 10, "max_streams": 0}})
    env = {"RELAY_REDIS_URL": redis_url}
    first, second = relay(env=env), relay(env=env)
    responses = burst([first.url, second.url], 40, {"X-API-Key": key}, kit.chat(stream=False))
    # Each relay got 20 requests, over the limit on its own: separate limits would admit 20.
    ports = [httpx.URL(server.url).port for server in (first, second)]
    assert Counter(r.url.port for r in responses) == {ports[0]: 20, ports[1]: 20}
    assert Counter(r.status_code for r in responses) == {200: 10, 429: 30}
    for server in (first, second):
        assert httpx.get(server.url + "/health").json()["ratelimit_backend"] == "redis"


@pytest.mark.parametrize("policy, status", [("open", 200), ("closed", 503)])
def test_redis_refusing_connections(relay, make_key, kit, policy, status):
    key = make_key("basic")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    server = relay(env={"RELAY_REDIS_URL": dead, "RELAY_RATELIMIT_FAIL": policy})
    for _ in range(3):
        response = httpx.post(
            server.url + "/v1/chat/completions",
            content=kit.chat(stream=False),
            headers={"X-API-Key": key},
            timeout=5,  # a request held on the dead store would raise ReadTimeout
        )
        assert response.status_code == status
    if status == 503:
        assert response.json()["error"]["code"] == "ratelimit_unavailable"
    metrics = httpx.get(server.url + "/metrics").text
    assert "relay_ratelimit_backend_errors_total 3" in metrics
    logged = [line for line in server.output if "rate-limit backend unavailable" in line]
    assert len(logged) == 1 and f"failing {policy}" in logged[0]  # logged once, not per request


class BlackHole:
    """Accepts TCP connections and never answers (a hung Redis)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.05)
        self.held: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.mark.parametrize("policy, status", [("open", 200), ("closed", 503)])
def test_redis_hanging_never_hangs_requests(relay, make_key, kit, policy, status):
    key = make_key("basic")
    hole = BlackHole()
    try:
        server = relay(
            env={
                "RELAY_REDIS_URL": f"redis://127.0.0.1:{hole.port}/0",
                "RELAY_RATELIMIT_FAIL": policy,
                "RELAY_REDIS_TIMEOUT_MS": "200",
            }
        )
        for _ in range(3):
            response = httpx.post(
                server.url + "/v1/chat/completions",
                content=kit.chat(stream=False),
                headers={"X-API-Key": key},
                timeout=5,  # a request held on the hung store would raise ReadTimeout
            )
            assert response.status_code == status
        metrics = httpx.get(server.url + "/metrics").text
        assert "relay_ratelimit_backend_errors_total 3" in metrics  # each answered without Redis
    finally:
        hole.close()
