"""The ``relaybench live`` tab in Locust's own web UI (``relaybench run --web``).

Built only on Locust's documented extension points (``examples/extend_web_ui.py``): a tab and
its table through ``template_args["extended_tabs"/"extended_tables"]``, the table's rows through
``extended_stats`` added to ``/stats/requests`` in an ``after_request`` hook, and routes on
its Flask app. The charts are a small script (``/relaybench/live.js``, no library, nothing
fetched from outside) that the same hook adds to the UI's page; it polls
``/relaybench/live.json`` every second and draws into the tab.

The numbers are the run's own: ``LiveSeries`` reads the run folder's files incrementally — the
records every Locust process of this target appends (``records/<target>.*.jsonl``, flushed at
least every 0.5 s) and the server samples (``server/*.process.jsonl``, or a ``--scrape``
endpoint's ``process_cpu_seconds_total`` where there is no PID) — so the tab shows what
the report will be built from. Live bins are by arrival: a request counts in the second its
first token (TTFT) or its end (done, errors, ITL) arrived, since the second it was *sent* is
not complete until its slowest answer is. Only complete seconds are shown.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

if TYPE_CHECKING:
    from locust.env import Environment

TAB = "relaybench"
WINDOW_S = 600  # seconds of history kept and served
SETTLE_S = 1.5  # a second is shown once its records have surely been flushed

TABLE = [
    {"key": "metric", "title": "metric (last complete second)"},
    {"key": "value", "title": "value"},
]


class _Second:
    __slots__ = ("done", "errors", "itl", "ttft")

    def __init__(self) -> None:
        self.ttft: list[float] = []
        self.itl: list[float] = []
        self.done = 0
        self.errors = 0


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


class LiveSeries:
    """Per-second numbers of one target, from the run folder, read where the last read ended."""

    def __init__(self, run_dir: Path, target: str) -> None:
        self.run_dir = Path(run_dir)
        self.target = target
        self.t0_ns: int | None = None
        self.seconds: dict[int, _Second] = defaultdict(_Second)
        self.users: dict[int, int] = {}
        self.cpu: dict[str, dict[int, float]] = defaultdict(dict)
        self._offsets: dict[Path, int] = {}

    def start(self, t0_ns: int) -> None:
        self.t0_ns = t0_ns

    def _second(self, t_ns: float) -> int:
        assert self.t0_ns is not None
        return int((t_ns - self.t0_ns) // 1_000_000_000)

    def _new_lines(self, path: Path) -> list[bytes]:
        """Complete lines appended since the last call (a half-written last line waits)."""
        offset = self._offsets.get(path, 0)
        try:
            with path.open("rb") as f:
                f.seek(offset)
                data = f.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1
        self._offsets[path] = offset + end
        return data[:end].splitlines()

    def refresh(self, users: int) -> None:
        if self.t0_ns is None:
            return
        self.users[self._second(time.time_ns())] = users
        for path in sorted((self.run_dir / "records").glob(f"{self.target}.*.jsonl")):
            for line in self._new_lines(path):
                self._add_record(line)
        self._read_cpu()
        oldest = self._second(time.time_ns()) - WINDOW_S
        for table in (self.seconds, self.users, *self.cpu.values()):
            for second in [s for s in table if s < oldest]:
                del table[second]

    def _read_cpu(self) -> None:
        """Each server's CPU %: its process samples, else its exported process metrics."""
        folder = self.run_dir / "server"
        pids = {p.name.removesuffix(".process.jsonl"): p for p in folder.glob("*.process.jsonl")}
        sources = [(p, server, "gauges", "cpu_pct", 1.0) for server, p in pids.items()]
        for path in folder.glob("*.metrics.jsonl"):
            server = path.name.removesuffix(".metrics.jsonl")
            if server not in pids:
                sources.append((path, server, "rates", "process_cpu_seconds_total", 100.0))
        for path, server, group, key, scale in sorted(sources):
            for line in self._new_lines(path):
                try:
                    row = orjson.loads(line)
                    cpu = float(row[group][key]) * scale
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue  # a gap line, a torn one, or a sample without that series
                self.cpu[server][self._second(row["time_ns"])] = round(cpu, 2)

    def _add_record(self, line: bytes) -> None:
        try:
            rec = orjson.loads(line)
            start = rec["start_ns"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        ttft = rec.get("ttft_ms")
        e2e = rec.get("e2e_ms")
        ended = self.seconds[self._second(start + (e2e or 0) * 1e6)]
        ended.done += 1
        if not rec.get("ok"):
            ended.errors += 1
            return
        if isinstance(ttft, int | float):
            self.seconds[self._second(start + ttft * 1e6)].ttft.append(float(ttft))
        chunks = rec.get("chunks_ms") or []
        ended.itl.extend(b - a for a, b in itertools.pairwise(chunks))

    def snapshot(self) -> dict[str, Any]:
        """The complete seconds so far, as parallel lists (what the tab's charts draw)."""
        if self.t0_ns is None:
            return {"target": self.target, "seconds": [], "series": {}, "cpu": {}}
        last = int((time.time_ns() - self.t0_ns) / 1e9 - SETTLE_S)
        first = max(0, last - WINDOW_S + 1)
        seconds = list(range(first, last + 1))
        bins = [self.seconds.get(s) or _Second() for s in seconds]
        series = {
            "ttft_p50": [_pct(b.ttft, 50) for b in bins],
            "ttft_p95": [_pct(b.ttft, 95) for b in bins],
            "itl_p95": [_pct(b.itl, 95) for b in bins],
            "users": [self.users.get(s) for s in seconds],
            "requests_per_s": [b.done for b in bins],
            "errors_per_s": [b.errors for b in bins],
        }
        cpu = {name: [values.get(s) for s in seconds] for name, values in sorted(self.cpu.items())}
        return {"target": self.target, "seconds": seconds, "series": series, "cpu": cpu}


def _latest(values: list) -> Any:
    return next((v for v in reversed(values) if v is not None), None)


def table_rows(snap: dict[str, Any]) -> list[dict[str, Any]]:
    series, cpu = snap.get("series") or {}, snap.get("cpu") or {}
    labels = {
        "ttft_p50": "TTFT p50 (ms)",
        "ttft_p95": "TTFT p95 (ms)",
        "itl_p95": "ITL p95 (ms)",
        "users": "active users",
        "requests_per_s": "requests done/s",
        "errors_per_s": "errors/s",
    }
    rows = [{"metric": label, "value": _latest(series.get(k, []))} for k, label in labels.items()]
    rows += [{"metric": f"{name} CPU %", "value": _latest(v)} for name, v in cpu.items()]
    return [{**r, "value": "–" if r["value"] is None else r["value"]} for r in rows]


def attach(env: Environment, run_dir: Path, target: str) -> LiveSeries:
    """Add the tab to ``env.web_ui`` and keep its numbers fresh once a second.

    Locust, Flask and gevent are imported here: importing Locust patches the process with
    gevent, which only the Locust process may have (``LiveSeries`` is tested without it)."""
    import gevent
    from flask import Response, request

    web = env.web_ui
    assert web is not None
    live = LiveSeries(run_dir, target)
    script = (Path(__file__).with_name("webui.js")).read_bytes()
    web.template_args["extended_tabs"] = [{"title": "relaybench live", "key": TAB}]
    web.template_args["extended_tables"] = [{"key": TAB, "structure": TABLE}]

    @web.app.route("/relaybench/live.json")
    def live_json() -> Response:
        return Response(orjson.dumps(live.snapshot()), mimetype="application/json")

    @web.app.route("/relaybench/live.js")
    def live_js() -> Response:
        return Response(script, mimetype="application/javascript")

    @web.app.after_request
    def extend(response: Response) -> Response:
        if request.path == "/stats/requests" and response.is_json:
            body = response.get_json()
            body["extended_stats"] = [{"key": TAB, "data": table_rows(live.snapshot())}]
            response.set_data(orjson.dumps(body))
        elif request.path == "/" and response.mimetype == "text/html":
            page = response.get_data()
            tag = b'<script src="./relaybench/live.js"></script></body>'
            response.set_data(page.replace(b"</body>", tag, 1))
        return response

    def tick() -> None:
        deadline = time.monotonic()
        while True:
            live.refresh(env.runner.user_count if env.runner else 0)
            deadline += 1.0
            gevent.sleep(max(0.0, deadline - time.monotonic()))

    gevent.spawn(tick)
    return live
