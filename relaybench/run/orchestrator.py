"""Runs a benchmark: each target in turn, one Locust process each, into one run folder.

Plain Python (no gevent): it starts or checks the targets, writes ``run.json``, launches
``python -m loadtests.worker`` per target, forwards Ctrl-C to it by PID, saves the mock's
counters after each target, polls the servers' metrics and processes meanwhile
(``relaybench.scrape``, into ``server/``), stops its servers, and finally has ``reports`` build
the summary (``docs/run-folder.md`` describes everything it writes).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from relaybench import credentials
from relaybench.errors import RelaybenchError
from relaybench.procs import owned_child
from relaybench.run import progress
from relaybench.run.config import LoadConfig, Target
from relaybench.run.earlystop import EarlyStop, Verdict
from relaybench.run.servers import BenchServers, MockSettings, check_reachable, http_json
from relaybench.scrape.scraper import Scraper

SCHEMA_VERSION = 1
WORKER_EXIT_GRACE_S = 20.0
VERSIONED = ("relaybench", "locust", "gevent", "geventhttpclient", "orjson", "psutil")


@dataclass
class RunPlan:
    """What ``relaybench run`` was asked to do (built by ``relaybench.run.cli``)."""

    run_dir: Path
    command: str
    load: LoadConfig  # the template: target and run_dir are filled in per target
    targets: list[Target]  # empty: start our own mock and relay, measure the default targets
    buffered: set[str] = field(default_factory=set)
    mock: MockSettings = field(default_factory=MockSettings)
    slo: dict[str, float] | None = None
    calibration: dict[str, Any] | None = None
    mock_url: str | None = None  # a mock we own behind external targets: reset it, save its stats
    full_report: bool = True  # False: summary.json only (calibration and benches)
    scrape_urls: list[tuple[str, str]] = field(default_factory=list)  # (name, Prometheus URL)
    scrape_pids: list[tuple[str, int]] = field(default_factory=list)  # (name, PID)
    scrape_redis: list[tuple[str, str]] = field(default_factory=list)  # (name, redis:// URL)
    scrape_interval_s: float = 1.0
    scrape_servers: bool = True  # scrape the servers we start (the bench's off switch)
    preflight: list[dict[str, Any]] = field(default_factory=list)  # relaybench.run.preflight


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def environment(processes: int) -> dict[str, Any]:
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count() or 1,
        "versions": versions,
        "processes": processes,
    }


def plan_duration(plan: RunPlan) -> float:
    """Seconds one target takes: its scenario plus a few for the Locust process to start."""
    return plan.load.shape.duration_s + 3.0


def default_targets(servers: BenchServers) -> list[Target]:
    assert servers.mock and servers.relay
    return [
        Target("direct", servers.mock.url, stream=True, kind="mock", stamps=True),
        Target("relay", servers.relay.url, stream=True, kind="relay", stamps=True),
        Target(
            "relay-buffered",
            servers.relay.url,
            stream=False,
            kind="relay",
            stamps=True,
            baseline=True,
        ),
    ]


class Orchestrator:
    def __init__(self, plan: RunPlan) -> None:
        self.plan = plan
        self.run_dir = plan.run_dir
        self.interrupted = False
        self.servers: BenchServers | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self.meta: dict[str, Any] = {}
        self.mock_url = plan.mock_url
        self.scraper: Scraper | None = None
        self._early: Verdict | None = None  # the current target was stopped early (EarlyStop)

    # -- signals ------------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.interrupted = True
        child = self._child
        if child is not None and child.poll() is None:
            os.kill(child.pid, signal.SIGINT)

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any] | None:
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        credentials.remove_stale_tempdirs()  # what a SIGKILLed run left behind
        try:
            targets = self._prepare_targets()
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._write_meta_start(targets)
            self.scraper = self._start_scraper()
            for i, target in enumerate(targets):
                if self.interrupted:
                    break
                left_s = (len(targets) - i) * plan_duration(self.plan)
                self._run_target(target, progress.target_header(i + 1, len(targets), left_s))
        finally:
            if self.scraper is not None:  # before the servers stop: their end is no gap
                self.scraper.stop()
            if self.servers is not None:
                self.servers.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)
        self.meta["ended_at"] = _now_iso()
        self.meta["interrupted"] = self.interrupted
        self._save_meta()
        return self._summarize() if self.meta.get("targets") else None

    def _prepare_targets(self) -> list[Target]:
        plan = self.plan
        if plan.targets:
            for t in plan.targets:
                check_reachable(t.name, t.url)
            return [replace(t, stream=t.name not in plan.buffered) for t in plan.targets]
        self.servers = BenchServers(plan.mock)
        self.servers.start()  # it prints one line per step
        assert self.servers.mock and self.servers.relay
        self.mock_url = self.servers.mock.url
        return default_targets(self.servers)

    def _start_scraper(self) -> Scraper | None:
        """Poll the servers while the targets run (``server/``; ``relaybench.scrape``)."""
        plan = self.plan
        scraper = Scraper(self.run_dir, plan.scrape_interval_s)
        if plan.scrape_servers and self.servers is not None:
            for server in (self.servers.relay, self.servers.mock):
                if server is not None and server.pid is not None:
                    scraper.add_process(server.name, server.pid)
            if self.servers.relay is not None:
                scraper.add_prometheus("relay", self.servers.relay.url + "/metrics")
        if plan.scrape_servers and self.mock_url:
            scraper.add_mock_stats("mock", self.mock_url + "/mock/stats")
        for name, url in plan.scrape_urls:
            scraper.add_prometheus(name, url)
        for name, pid in plan.scrape_pids:
            scraper.add_process(name, pid)
        for name, url in plan.scrape_redis:
            scraper.add_redis(name, url)
        if not scraper.sources:
            return None
        self.meta["scrape"] = {
            "interval_s": plan.scrape_interval_s,
            "sources": [s.name for s in scraper.sources],
        }
        self._save_meta()
        return scraper.start()

    def _write_meta_start(self, targets: list[Target]) -> None:
        plan = self.plan
        load = plan.load
        self.meta = {
            "schema_version": SCHEMA_VERSION,
            "scenario": load.shape.scenario,
            "command": plan.command,
            "started_at": _now_iso(),
            "ended_at": None,
            "seed": load.seed,
            "users": load.shape.users,
            "duration_s": load.shape.duration_s,
            "interrupted": False,
            "scenario_params": load.shape.as_dict(),
            "traffic": load.traffic.as_dict(),  # trace cut and scale, chat, retry policy
            "slo": plan.slo,
            "mock": plan.mock.as_dict() if self.servers else None,
            "max_tokens": list(load.max_tokens) if load.max_tokens else None,
            "targets": {},
            "planned_targets": [t.name for t in targets],
            "environment": environment(load.generators),
        }
        if plan.calibration is not None:
            self.meta["calibration"] = plan.calibration
        if plan.preflight:
            self.meta["preflight"] = plan.preflight
        self._save_meta()

    def _save_meta(self) -> None:
        path = self.run_dir / "run.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_bytes(orjson.dumps(self.meta, option=orjson.OPT_INDENT_2))
        tmp.replace(path)

    def _run_target(self, target: Target, header: str = "") -> None:
        plan = self.plan
        self._early = None
        api_key = self.servers.api_key if (self.servers and target.kind == "relay") else None
        cfg = replace(
            plan.load,
            run_dir=str(self.run_dir),
            target=target,
            api_key=api_key if self.servers else plan.load.api_key,
        )
        if self.mock_url:
            http_json(self.mock_url + "/mock/reset", method="POST")
        entry: dict[str, Any] = {
            "url": credentials.redact_url(target.url),  # user:password@ never written
            "stream": target.stream,
            "kind": target.kind,
            "stamps": target.stamps,
            "baseline": target.baseline,
            "started_ns": time.time_ns(),
            "ended_ns": None,
        }
        self.meta["targets"][target.name] = entry
        self._save_meta()
        mode = "streaming" if target.stream else "buffered (stream: false)"
        print(
            f"== {target.name}: {entry['url']} {mode}, {cfg.shape.scenario}, "
            f"{cfg.shape.users} users, {cfg.shape.duration_s:g} s"
            + (f" — {header}" if header else ""),
            flush=True,
        )
        code = self._launch(cfg)
        if self._early is not None:
            entry["stopped_early"] = self._early.as_dict()
        entry["ended_ns"] = time.time_ns()
        entry["process_started_ns"] = entry["started_ns"]
        entry["process_ended_ns"] = entry["ended_ns"]
        if self.mock_url:
            stats = http_json(self.mock_url + "/mock/stats")
            path = self.run_dir / "mock_stats" / f"{target.name}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(orjson.dumps(stats, option=orjson.OPT_INDENT_2))
        result = self.run_dir / "loadgen" / f"{target.name}.locust.json"
        if result.exists():
            locust = orjson.loads(result.read_bytes())
            entry["locust"] = locust
            # the measured window is the scenario's own: from its time zero to its end
            entry["started_ns"] = locust.get("t0_ns") or entry["started_ns"]
            entry["ended_ns"] = locust.get("stopping_ns") or entry["ended_ns"]
            if locust.get("interrupted") and self._early is None:
                self.interrupted = True  # a STOP in Locust's web UI
        self._save_meta()
        if code not in (0, 130) and not self.interrupted:
            raise RelaybenchError(f"the load generator for {target.name} exited with code {code}")

    def _launch(self, cfg: LoadConfig) -> int:
        role = "master" if cfg.distributed else "local"
        with credentials.private_tempdir() as tmp:
            config_path = Path(tmp) / "load.json"  # no API key: that goes in the child's env
            cfg.dump(config_path)
            if cfg.remote_workers:
                config_path = self._remote_config(cfg)
            argv = [sys.executable, "-m", "loadtests.worker", str(config_path), "--role", role]
            self._child = subprocess.Popen(argv, **owned_child(credentials.child_env(cfg.api_key)))
            try:
                return self._wait_child(cfg)
            finally:
                if cfg.remote_workers:
                    config_path.unlink(missing_ok=True)  # only needed while the run goes
                child, self._child = self._child, None
                if child.poll() is None:
                    os.kill(child.pid, signal.SIGKILL)
                    child.wait()

    def _remote_config(self, cfg: LoadConfig) -> Path:
        """The config remote workers need, in the run folder (without the API key)."""
        path = self.run_dir / "remote" / f"{cfg.target.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        cfg.dump(path)
        print(
            f"  waiting for {cfg.remote_workers} remote worker(s); on each machine, with this "
            f"file copied to the same path:\n    python -m loadtests.worker {path} --role worker "
            f"--master-host <this host> --master-port {cfg.master_port}"
            + (f"\n  (with the API key in ${credentials.API_KEY_ENV})" if cfg.api_key else ""),
            flush=True,
        )
        return path

    def _wait_child(self, cfg: LoadConfig) -> int:
        child = self._child
        assert child is not None
        limit = cfg.shape.duration_s + cfg.stop_timeout_s + 120 + 300 * bool(cfg.remote_workers)
        deadline = time.monotonic() + limit
        signalled_at: float | None = None
        watch = None if cfg.remote_workers else EarlyStop(self.run_dir, cfg.target.name)
        while True:
            try:
                return child.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            verdict = watch.check() if watch is not None and self._early is None else None
            if verdict is not None:  # its first requests all failed alike: stop this target
                self._early = verdict
                print(
                    f"  [{cfg.target.name}] stopped early: its first {verdict.requests} requests "
                    f"all failed: {verdict.cause}",
                    flush=True,
                )
                os.kill(child.pid, signal.SIGINT)
                signalled_at = now
            if self.interrupted and signalled_at is None:
                signalled_at = now
            if signalled_at is not None and now - signalled_at > WORKER_EXIT_GRACE_S:
                os.kill(child.pid, signal.SIGKILL)
            if now > deadline:
                os.kill(child.pid, signal.SIGKILL)
                child.wait()
                raise RelaybenchError(f"the load generator ran past {limit:.0f}s and was killed")

    def _summarize(self) -> dict[str, Any] | None:
        if not any((self.run_dir / "records").glob("*.jsonl")):
            print("no records were written; no summary", file=sys.stderr)
            return None
        from reports.summary import write_summary

        if not self.plan.full_report:
            return write_summary(self.run_dir)
        try:
            from reports.pipeline import rebuild
        except ImportError:  # the report pipeline is optional; the summary is not
            return write_summary(self.run_dir)
        progress.step("building the report: summary.json, charts, report.md, report.html ...")
        result = rebuild(self.run_dir)
        progress.step(f"report: {self.run_dir / 'report.html'}")
        summary = result.get("summary") if isinstance(result, dict) else None
        if summary is None or "targets" not in summary:
            summary = orjson.loads((self.run_dir / "summary.json").read_bytes())
        return summary
