"""``relaybench run --web``: the "relaybench live" tab in Locust's UI, in real headless Chromium.

Chromium is driven over the DevTools protocol (a websocket; ``websockets`` comes with uvicorn):
the page loads, the tab is in Locust's tab bar, its charts draw pixels, and the numbers move
from one second to the next while the run goes.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
    "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage",
]  # fmt: skip
pytestmark = pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium")

STATE = """(() => {
  const box = document.getElementById('relaybench-live');
  if (!box) return null;
  const ink = [...box.querySelectorAll('canvas')].map(c => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
    return n;
  });
  return {updates: +box.dataset.updates, seconds: +(box.dataset.seconds || 0),
          points: +(box.dataset.points || 0), last: box.dataset.last || null,
          shown: box.offsetParent !== null, ink,
          tabs: [...document.querySelectorAll('[role=tab]')].map(t => t.textContent),
          titles: [...box.querySelectorAll('.relaybench-title')].map(t => t.textContent)};
})()"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


class DevTools:
    """The few DevTools protocol calls the test needs, on one page."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict:
        n = next(self._ids)
        self.ws.send(json.dumps({"id": n, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=20))
            if message.get("id") == n:
                assert "error" not in message, message
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[DevTools]:
    profile = tmp_path / "profile"
    proc = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
         "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        active = profile / "DevToolsActivePort"
        _wait(lambda: active.exists() and len(active.read_text().split()) == 2, 30, "DevTools")
        port = active.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as resp:
            pages = [t for t in json.loads(resp.read()) if t["type"] == "page"]
        with connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=10) as ws:
            yield DevTools(ws)
    finally:
        proc.kill()
        proc.wait()


def test_the_live_tab_loads_draws_and_its_numbers_move(
    start_server, tmp_path: Path, chromium: DevTools
) -> None:
    mock = start_server("mock_upstream", "--ttft-ms", "30", "--itl-ms", "5")
    port = _free_port()
    run = subprocess.Popen(
        [sys.executable, "-m", "relaybench", "run", "--target", f"direct={mock.url}",
         "--users", "3", "--duration", "40", "--max-tokens", "10",
         "--scrape-pid", f"mock={mock.pid}", "--web", "--web-port", str(port),
         "--out", str(tmp_path / "run")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait(lambda: run.poll() is not None or _answers(f"http://127.0.0.1:{port}/"), 60, "UI")
        assert run.poll() is None, "the run ended before its web UI answered"
        chromium.call(
            "Emulation.setDeviceMetricsOverride", width=1100, height=1300, deviceScaleFactor=1,
            mobile=False,
        )  # fmt: skip
        chromium.call("Page.navigate", url=f"http://127.0.0.1:{port}/?tab=relaybench")
        first = _wait(
            lambda: (s := chromium.evaluate(STATE)) and s["seconds"] >= 2 and s["points"] and s,
            40,
            "the tab's first complete seconds",
        )
        assert "relaybench live" in first["tabs"]  # in Locust's own tab bar
        assert first["shown"]  # the selected tab shows the charts
        assert len(first["ink"]) == 6 and all(n > 0 for n in first["ink"])  # every chart drew
        titles = " ".join(first["titles"])
        for name in ("TTFT p50", "ITL p95", "active users", "requests done/s", "errors/s"):
            assert name in titles
        assert "mock" in first["titles"][-1]  # the scraped server's CPU
        later = _wait(
            lambda: (s := chromium.evaluate(STATE)) and s["seconds"] >= first["seconds"] + 2 and s,
            20,
            "two more seconds",
        )
        assert later["updates"] >= first["updates"] + 2  # redrawn every second
        assert json.loads(later["last"])["second"] > json.loads(first["last"])["second"]
        assert sum(json.loads(later["last"])["requests"]) > sum(
            json.loads(first["last"])["requests"]
        )
        # Locust's own table in the tab carries the same latest numbers
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats/requests", timeout=5) as r:
            extended = json.loads(r.read())["extended_stats"][0]
        assert extended["key"] == "relaybench"
        assert {row["metric"] for row in extended["data"]} >= {"TTFT p95 (ms)", "mock CPU %"}
        shot = chromium.call("Page.captureScreenshot", format="png")["data"]
        (tmp_path / "live_tab.png").write_bytes(base64.b64decode(shot))  # kept for a human look
    finally:
        if run.poll() is None:
            run.send_signal(signal.SIGINT)
        try:
            run.wait(60)
        except subprocess.TimeoutExpired:
            run.kill()
            run.wait()
