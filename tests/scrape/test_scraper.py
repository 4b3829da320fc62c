"""The Scraper against real sockets: an endpoint that goes away and comes back, a slow one,
one that is not Prometheus, and a process that exits mid-run."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import psutil
import pytest

from relaybench.scrape import samples
from relaybench.scrape.scraper import Scraper
from tests.scrape.fake_server import FakeEndpoint

METRICS = """\
# TYPE demo_requests_total counter
demo_requests_total {n}
# TYPE demo_active gauge
demo_active 3
"""
INTERVAL = 0.05
# each poll's own timeout (the Scraper's default is the interval): a 50 ms whole-answer deadline
# turned a descheduled poll into a "timeout" gap where a test expects another kind or none; only
# the slow-endpoint test times out on purpose
TIMEOUT_S = 2.0


@pytest.fixture
def endpoint() -> Iterator[FakeEndpoint]:
    server = FakeEndpoint(METRICS.format(n=0)).start()
    yield server
    server.stop()


def _lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_an_endpoint_that_goes_away_and_comes_back_leaves_a_gap(
    tmp_path: Path, endpoint: FakeEndpoint
) -> None:
    warnings: list[str] = []
    path = tmp_path / "server" / "demo.metrics.jsonl"
    scraper = Scraper(tmp_path, interval_s=INTERVAL, timeout_s=TIMEOUT_S, warn=warnings.append)
    scraper.add_prometheus("demo", endpoint.url)
    scraper.start()
    try:
        _wait_for(lambda: sum(bool(r.get("rates")) for r in _lines(path)) >= 2)
        endpoint.stop()
        _wait_for(lambda: sum("gap" in r for r in _lines(path)) >= 3)
        endpoint.body = METRICS.format(n=50)
        endpoint.start()  # same port
        count = len(_lines(path))
        _wait_for(lambda: any("rates" in r for r in _lines(path)[count:]))
    finally:
        scraper.stop()
    rows = _lines(path)
    gaps = [r for r in rows if "gap" in r]
    # the server went away: refused connections (the first one may be cut mid-answer instead)
    assert gaps and all(
        ("unreachable" in g["gap"]) or ("connection lost" in g["gap"]) for g in gaps
    )
    assert "unreachable" in gaps[-1]["gap"]
    assert len(warnings) == 1 and gaps[0]["gap"] in warnings[0]  # warned once, not per gap
    first_gap = rows.index(gaps[0])
    resumed = [r for r in rows[first_gap:] if "gauges" in r]
    assert resumed and resumed[0]["gauges"]["demo_active"] == 3
    # time stamps: wall and monotonic, in order
    assert all(a["mono_ns"] < b["mono_ns"] for a, b in itertools.pairwise(rows))
    assert all(isinstance(r["time_ns"], int) for r in rows)
    written = samples.status(tmp_path)
    status = written["sources"][0]
    assert status["name"] == "demo.metrics" and status["gaps"] == len(gaps)
    assert status["samples"] == len(rows) - len(gaps)
    # what scraping cost: the thread's CPU seconds, well under the wall time it ran
    assert written["wall_s"] > 0 and 0 < status["cpu_s"] < written["wall_s"]


def test_a_slow_endpoint_times_out_and_never_holds_the_stop(
    tmp_path: Path, endpoint: FakeEndpoint
) -> None:
    endpoint.delay_s = 3.0
    warnings: list[str] = []
    scraper = Scraper(tmp_path, interval_s=0.2, timeout_s=0.2, warn=warnings.append)
    scraper.add_prometheus("slow", endpoint.url)
    path = tmp_path / "server" / "slow.metrics.jsonl"
    scraper.start()
    try:
        _wait_for(lambda: any("gap" in r for r in _lines(path)))
    finally:
        began = time.monotonic()
        scraper.stop()
        stop_took = time.monotonic() - began
    gap = next(r for r in _lines(path) if "gap" in r)
    assert "timeout" in gap["gap"]
    assert warnings and "timeout" in warnings[0]
    # stop() does not wait for the stalled answer (3 s): it returns in a fraction of it
    assert stop_took < endpoint.delay_s / 3


@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        ("<html><body>login</body></html>", "text/html"),
        ('{"ok": true}', "application/json"),
        ("<html>" + "x" * 75_000 + "</html>", "text/html"),  # one line: the parser quotes it
    ],
)
def test_not_prometheus_text_warns_once_briefly_and_the_scraper_goes_on(
    tmp_path: Path, endpoint: FakeEndpoint, body: str, ctype: str
) -> None:
    endpoint.body, endpoint.content_type = body, ctype
    warnings: list[str] = []
    scraper = Scraper(tmp_path, interval_s=INTERVAL, timeout_s=TIMEOUT_S, warn=warnings.append)
    scraper.add_prometheus("web", endpoint.url)
    path = tmp_path / "server" / "web.metrics.jsonl"
    with scraper:
        _wait_for(lambda: len(_lines(path)) >= 3)
    gaps = [r["gap"] for r in _lines(path)]
    assert all("not Prometheus text" in g and ctype in g and len(g) < 400 for g in gaps)
    assert len(warnings) == 1 and ctype in warnings[0] and len(warnings[0]) < 600
    first = samples.status(tmp_path)["sources"][0]["first_error"]
    assert first == gaps[0]  # what the notes and the reports quote


def test_an_unreachable_url_at_the_start_is_a_gap_not_an_error(tmp_path: Path) -> None:
    free = FakeEndpoint().start()
    url = free.url
    free.stop()  # nothing listens there now
    warnings: list[str] = []
    scraper = Scraper(tmp_path, interval_s=INTERVAL, timeout_s=TIMEOUT_S, warn=warnings.append)
    scraper.add_prometheus("gone", url)
    with scraper:
        _wait_for(lambda: len(_lines(tmp_path / "server" / "gone.metrics.jsonl")) >= 2)
    assert len(warnings) == 1 and "unreachable" in warnings[0]


def test_credentials_in_a_url_never_reach_a_file_or_a_warning(tmp_path: Path) -> None:
    warnings: list[str] = []
    scraper = Scraper(tmp_path, interval_s=INTERVAL, timeout_s=TIMEOUT_S, warn=warnings.append)
    scraper.add_prometheus("secret", "http://admin:hunter2@127.0.0.1:9/metrics")
    with scraper:
        _wait_for(lambda: bool(warnings))
    written = b"".join(p.read_bytes() for p in (tmp_path / "server").iterdir())
    assert b"hunter2" not in written and "hunter2" not in warnings[0]
    assert "***@127.0.0.1:9" in warnings[0]


def test_a_process_that_exits_mid_run_is_a_gap_and_noted(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    warnings: list[str] = []
    scraper = Scraper(tmp_path, interval_s=INTERVAL, warn=warnings.append)
    scraper.add_process("child", child.pid)
    path = tmp_path / "server" / "child.process.jsonl"
    try:
        scraper.start()
        _wait_for(lambda: len(_lines(path)) >= 3)
        assert child.stdin is not None
        child.stdin.close()  # the child exits now
        child.wait(10)
        _wait_for(lambda: any("gap" in r for r in _lines(path)))
        time.sleep(INTERVAL * 4)  # no sample after the end
    finally:
        scraper.stop()
        if child.poll() is None:
            child.kill()
            child.wait()
    rows = _lines(path)
    assert "gap" in rows[-1] and "exited" in rows[-1]["gap"]
    assert sum("gap" in r for r in rows) == 1
    sample = rows[0]["gauges"]
    assert sample["rss_mb"] > 0 and sample["threads"] >= 1 and sample["fds"] >= 3
    assert sample["cpu_s"] >= 0 and "cpu_pct" in sample
    assert len(warnings) == 1 and f"{child.pid}" in warnings[0]
    status = samples.status(tmp_path)["sources"][0]
    assert status["ended"] and "exited" in status["ended"]


def test_a_pid_that_does_not_exist_is_noted_once(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    warnings: list[str] = []
    scraper = Scraper(tmp_path, interval_s=INTERVAL, warn=warnings.append)
    scraper.add_process("ghost", child.pid)
    with scraper:
        _wait_for(lambda: bool(warnings))
    rows = _lines(tmp_path / "server" / "ghost.process.jsonl")
    assert len(rows) == 1 and "no process" in rows[0]["gap"]


def test_source_names_are_unique_and_file_safe(tmp_path: Path) -> None:
    scraper = Scraper(tmp_path, interval_s=INTERVAL, warn=lambda _: None)
    scraper.add_prometheus("a/b c", "http://127.0.0.1:9/metrics")
    scraper.add_prometheus("a/b c", "http://127.0.0.1:9/metrics")
    assert [s.name for s in scraper.sources] == ["a-b-c.metrics", "a-b-c-2.metrics"]


def test_a_server_with_worker_processes_is_sampled_as_one_tree(tmp_path: Path) -> None:
    """A parent that forks a worker (as the relay's --workers does): the worker's CPU counts
    (from when the sampler first saw it: it starts busy only after a second)."""
    worker = (
        "import time\ntime.sleep(1.0)\nend = time.process_time() + 0.3\n"
        "while time.process_time() < end: pass\ntime.sleep(60)"
    )
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys; subprocess.run([sys.executable, '-c', {worker!r}])",
        ]
    )
    scraper = Scraper(tmp_path, interval_s=INTERVAL, warn=lambda _: None)
    scraper.add_process("tree", parent.pid)
    path = tmp_path / "server" / "tree.process.jsonl"
    try:
        with scraper:
            _wait_for(lambda: any(r["gauges"]["cpu_s"] >= 0.25 for r in _lines(path)))
    finally:
        for child in psutil.Process(parent.pid).children(recursive=True):
            child.kill()
        parent.kill()
        parent.wait()
    rows = _lines(path)
    assert max(r["gauges"]["processes"] for r in rows) == 2
    assert max(r["gauges"]["cpu_pct"] for r in rows) > 20  # the worker's busy loop


def test_a_redis_is_timed_and_counted_and_its_loss_is_a_gap(tmp_path: Path, redis_url) -> None:
    warnings: list[str] = []
    scraper = Scraper(tmp_path, interval_s=INTERVAL, timeout_s=TIMEOUT_S, warn=warnings.append)
    scraper.add_redis("redis", redis_url)
    path = tmp_path / "server" / "redis.redis.jsonl"
    with scraper:
        _wait_for(lambda: sum(bool(r.get("rates")) for r in _lines(path)) >= 2)
    rows = _lines(path)
    sample = rows[-1]
    # the PING round trip is timed inside the poll, so it is positive and at most the poll's own
    # duration (both on the monotonic clock): a unit slip either way fails, a descheduled poll
    # (slow by both measures) does not
    assert 0 < sample["gauges"]["ping_ms"] <= sample["poll_ms"] + 0.001, sample
    assert sample["gauges"]["connected_clients"] >= 1
    assert sample["rates"]["commands"] > 0  # our own PING and INFO, at least
    assert not warnings
    gone = Scraper(
        tmp_path / "gone", interval_s=INTERVAL, timeout_s=TIMEOUT_S, warn=warnings.append
    )
    gone.add_redis("redis", "redis://127.0.0.1:9/0")
    with gone:
        _wait_for(lambda: bool(warnings))
    assert "ConnectionError" in warnings[0]


def test_an_unexpected_failure_inside_a_poll_is_a_gap_and_the_thread_goes_on(
    tmp_path: Path, endpoint: FakeEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug-shaped failure (here: the parser raising something unforeseen) must not end the
    source's thread: a gap with the error, then samples again once it stops."""
    from relaybench.scrape import prom

    real, calls = prom.parse, {"n": 0}

    def flaky(text: str) -> prom.Snapshot:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise KeyError("surprise")
        return real(text)

    monkeypatch.setattr(prom, "parse", flaky)
    warnings: list[str] = []
    scraper = Scraper(tmp_path, interval_s=INTERVAL, timeout_s=TIMEOUT_S, warn=warnings.append)
    scraper.add_prometheus("odd", endpoint.url)
    path = tmp_path / "server" / "odd.metrics.jsonl"
    with scraper:
        _wait_for(lambda: any("gauges" in r for r in _lines(path)))
    rows = _lines(path)
    assert [r["gap"] for r in rows[:2]] == ["unexpected KeyError: 'surprise'"] * 2
    assert "gauges" in rows[2] and len(warnings) == 1
