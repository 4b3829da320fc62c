"""relaybench.serve on a tiny ASGI app: one ready line, exit 0 on a signal, hooks, bad address."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import subprocess
import sys

import httpx
import pytest

from relaybench.errors import UsageError
from relaybench.procs import ServerProcess
from relaybench.serve import ServeOptions, _Workers, bind

APP = """
import sys
from relaybench.serve import ServeOptions, Service, serve

async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})

def factory():
    print("factory ran in the loop", file=sys.stderr, flush=True)

    async def aclose():
        print("closed", file=sys.stderr, flush=True)

    return Service(app, on_stop=lambda: print("stopping", file=sys.stderr, flush=True),
                   aclose=aclose)

sys.exit(serve(factory, ServeOptions(port=0, grace_s=1.0), factory=True))
"""


def test_one_ready_line_then_a_clean_stop_on_sigterm() -> None:
    server = ServerProcess("tiny", ["-c", APP]).start()
    try:
        assert httpx.get(server.url + "/").text == "ok"
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(10) == 0  # not killed by the signal uvicorn captured
    finally:
        server.stop()
    lines = list(server.output)
    assert [line for line in lines if line.startswith("listening on")] == [
        f"listening on {server.url}"
    ]
    assert lines.index("stopping") < lines.index("closed")
    assert "factory ran in the loop" in lines


def test_a_port_in_use_is_a_usage_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UsageError, match=f"cannot listen on 127.0.0.1:{port}"):
            bind("127.0.0.1", port)


def test_several_workers_need_a_way_to_start_them() -> None:
    code = (
        "from relaybench.serve import ServeOptions, serve\n"
        "serve(lambda *a: None, ServeOptions(workers=2))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "worker_argv is needed" in done.stderr


def test_reuse_port_lets_two_listeners_share_a_port() -> None:
    first = bind("127.0.0.1", 0, reuse_port=True)
    try:
        first.listen()
        port = first.getsockname()[1]
        with pytest.raises(UsageError):
            bind("127.0.0.1", port)  # without SO_REUSEPORT the port is taken
        second = bind("127.0.0.1", port, reuse_port=True)
        second.listen()
        second.close()
    finally:
        first.close()


SHORT_LIVED = """
import sys, time
print("listening on http://127.0.0.1:1", flush=True)
time.sleep(0.3)
sys.exit(3)
"""


def test_a_dead_worker_is_replaced_once_and_a_replacement_dying_young_is_not(caplog) -> None:
    workers = _Workers(ServeOptions(name="tiny"))
    exits: list[int] = []

    async def watch_until_given_up() -> None:
        watching = asyncio.ensure_future(workers.watch(exits.append))
        deadline = asyncio.get_running_loop().time() + 10
        while not workers.slots[0].ended:
            assert asyncio.get_running_loop().time() < deadline, "never gave up on the slot"
            await asyncio.sleep(0.05)
        watching.cancel()

    try:
        workers.start([["-c", SHORT_LIVED]])
        first = workers.slots[0].proc.pid
        with caplog.at_level(logging.WARNING, logger="tiny.workers"):
            asyncio.run(watch_until_given_up())
    finally:
        workers.stop(1.0)
    # the first copy (seen ready) died: reported and replaced; its replacement died within
    # MIN_WORKER_LIFE_S: reported, and not started again
    assert exits[0] == first and len(exits) == 2 and exits[1] != first
    assert [r.levelname for r in caplog.records] == ["WARNING", "ERROR"]
    assert f"(pid {first}) exited with code 3; started pid {exits[1]}" in caplog.records[0].msg
    assert "not started again" in caplog.records[1].msg
