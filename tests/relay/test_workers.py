"""``--workers N``: a copy that dies is started again, and its live gauges leave /metrics."""

from __future__ import annotations

import os
import signal
import time

import httpx

ACTIVE = ("relay_active_streams", frozenset())
CHAT = "/v1/chat/completions"
SLOW = {"X-Mock-ITL-Ms": "200", "X-Mock-Output-Tokens": "150"}  # 30 s: outlives the test


def _health_pids(url: str, tries: int = 12) -> set[int]:
    """The PIDs that answered ``tries`` new connections (the kernel spreads them)."""
    pids = set()
    for _ in range(tries):
        with httpx.Client() as client:
            pids.add(client.get(url + "/health").json()["pid"])
    return pids


def _until(check, what: str, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while not (got := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)
    return got


def test_a_killed_worker_is_replaced_and_its_streams_leave_the_gauge(relay, kit) -> None:
    server = relay("--workers", "2", "--auth", "off", env={"RELAY_ANON_PLAN": "unlimited"})
    first = server.pid
    # hold streams on both processes: /health on a keep-alive connection says which one the
    # stream that follows on it reaches
    held: dict[int, list] = {}
    opened = []
    for _ in range(20):
        client = httpx.Client()
        pid = client.get(server.url + "/health").json()["pid"]
        stream = client.stream("POST", server.url + CHAT, content=kit.chat(), headers=SLOW)
        assert stream.__enter__().status_code == 200
        opened.append((client, stream))
        held.setdefault(pid, []).append(stream)
        if len(held) == 2 and all(len(s) >= 1 for s in held.values()):
            break
    try:
        (victim,) = set(held) - {first}
        total = sum(len(s) for s in held.values())
        _until(lambda: kit.metrics(server)[ACTIVE] == total, f"the gauge never read {total}")
        os.kill(victim, signal.SIGKILL)
        # a new copy answers in its place, and the dead one's streams are no longer counted
        fresh = _until(lambda: _health_pids(server.url) - {first, victim}, "no worker replaced it")
        assert victim not in _health_pids(server.url)
        survivors = len(held[first])
        _until(
            lambda: {kit.metrics(server)[ACTIVE] for _ in range(6)} == {survivors},
            f"the dead worker's streams are still counted (want {survivors})",
        )
        logged = "\n".join(server.output)
        assert f"worker (pid {victim}) exited with code -9; started pid {fresh.pop()}" in logged
    finally:
        for client, stream in opened:
            stream.__exit__(None, None, None)
            client.close()
