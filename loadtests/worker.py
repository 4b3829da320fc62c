"""The Locust process of one target: ``python -m loadtests.worker CONFIG.json [--role ...]``.

It runs in its own process because gevent must monkey-patch before anything else is imported,
and the orchestrator (``relaybench.run.cli``) should stay plain Python that starts servers, handles
signals and stops everything by PID.

Roles:
- ``local``  (``--processes 1``): one process, Locust's ``LocalRunner``.
- ``master`` (``--processes N``): a Locust ``MasterRunner`` on 127.0.0.1 that starts ``N``
  ``worker`` subprocesses of this module, waits until they are all connected, then drives the
  scenario. It generates no load itself.
- ``worker``: a ``WorkerRunner`` connected to ``--master-host``/``--master-port``; it writes its
  own ``records/<target>.<worker>.jsonl`` and ``loadgen/<target>.<worker>.jsonl``. Started on
  another machine with a copy of the config, it is a remote load generator (README).

The local/master process writes ``loadgen/<target>.locust.json`` at the end: Locust's own request
counts, which must equal the pooled records (a test checks it), and whether it was interrupted.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import csv  # noqa: E402
import gc  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import orjson  # noqa: E402
from locust.env import Environment  # noqa: E402
from locust.runners import Runner  # noqa: E402
from locust.shape import LoadTestShape  # noqa: E402
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV, StatsCSVFileWriter  # noqa: E402

from loadtests import shapes, webui  # noqa: E402
from loadtests.sink import CpuSampler, RecordWriter, worker_id  # noqa: E402
from loadtests.user import ChatUser, LoadContext, make_user_class  # noqa: E402
from relaybench.credentials import API_KEY_ENV  # noqa: E402
from relaybench.procs import die_with_parent, owned_child  # noqa: E402
from relaybench.run import progress  # noqa: E402
from relaybench.run.config import LoadConfig, ShapeParams  # noqa: E402

T0_MESSAGE = "relaybench_t0"
WORKERS_READY_TIMEOUT_S = 60.0


class ScenarioShape(LoadTestShape):
    """Adapts the pure ``shapes.stage_at`` to Locust's shape protocol."""

    def __init__(self, params: ShapeParams) -> None:
        super().__init__()
        self.params = params

    def tick(self) -> tuple[int, float] | None:
        stage = shapes.stage_at(self.params, self.get_run_time())
        if stage is None:
            return None
        return stage.users, float(max(50, stage.users * 2))  # ramps are the shape's, not Locust's


def _end_at(runner: Runner, stopper: _Stopper, t0_ns: int, duration_s: float) -> None:
    """Stop exactly ``duration_s`` after time zero (Locust's shape ticks only once a second).

    The scenario's end is the deadline itself, whatever the wake-up or ``stop()`` cost."""
    deadline = t0_ns + round(duration_s * 1e9)
    stopper.deadline_ns = deadline
    while (left := deadline - time.time_ns()) > 0:
        gevent.sleep(left / 1e9)
    if stopper.stopping_ns is None:
        stopper.stopping_ns = deadline
    runner.stop()


def _housekeeping(ctx: LoadContext, sampler: CpuSampler, env: Environment) -> None:
    """Flush records often and sample this process's CPU about once a second."""
    next_sample = time.monotonic() + 1.0
    while True:
        ctx.writer.flush_if_due()
        now = time.monotonic()
        if now >= next_sample:
            sampler.sample(env.runner.user_count if env.runner else 0)
            next_sample += 1.0
            if next_sample < now:  # fell behind (a busy process): do not burst
                next_sample = now + 1.0
        gevent.sleep(0.1)


def _progress(env: Environment, cfg: LoadConfig, t_start: float) -> None:
    deadline = t_start
    done_before = 0
    while True:
        deadline += cfg.progress_interval_s
        gevent.sleep(max(0.0, deadline - time.monotonic()))
        done = env.stats.get(f"E2E {cfg.target.name}", "E2E").num_requests
        rps = (done - done_before) / cfg.progress_interval_s
        done_before = done
        print(_progress_line(env, cfg, time.monotonic() - t_start, rps), flush=True)


def _progress_line(
    env: Environment, cfg: LoadConfig, elapsed: float, rps: float, *, final: bool = False
) -> str:
    """The live line (``relaybench.run.progress``); ``final``: once every request has ended,
    so its count is the records' count."""
    name = cfg.target.name
    ttft = env.stats.get(f"TTFT {name}", "TTFT")
    e2e = env.stats.get(f"E2E {name}", "E2E")
    answered = ttft.num_requests > 0
    causes = [
        (progress.error_text(e.error), e.occurrences)
        for e in env.stats.errors.values()
        if e.name == e2e.name
    ]
    return progress.line(
        name,
        elapsed_s=min(elapsed, cfg.shape.duration_s),
        total_s=cfg.shape.duration_s,
        users=env.runner.user_count if env.runner else 0,
        rps=rps,
        ttft_p50=ttft.get_response_time_percentile(0.5) if answered else None,
        ttft_p95=ttft.get_response_time_percentile(0.95) if answered else None,
        done=e2e.num_requests,
        errors=e2e.num_failures,
        causes=causes,
        final=final,
    )


def _final_progress(env: Environment, cfg: LoadConfig, t0_ns: int, stopper: _Stopper) -> None:
    seconds = max(1e-9, ((stopper.stopping_ns or time.time_ns()) - t0_ns) / 1e9)
    done = env.stats.get(f"E2E {cfg.target.name}", "E2E").num_requests
    print(_progress_line(env, cfg, seconds, done / seconds, final=True), flush=True)


def _write_result(
    env: Environment, cfg: LoadConfig, stopper: _Stopper, t0_ns: int, workers: int
) -> None:
    name = cfg.target.name
    e2e = env.stats.get(f"E2E {name}", "E2E")
    ttft = env.stats.get(f"TTFT {name}", "TTFT")
    result = {
        "locust_requests": e2e.num_requests,
        "locust_failures": e2e.num_failures,
        "locust_ttft_count": ttft.num_requests,
        "interrupted": stopper.interrupted,
        "processes": workers,
        "t0_ns": t0_ns,  # the scenario's time zero: the target's measured window starts here
        "stopping_ns": stopper.stopping_ns,  # the scenario ended (or Ctrl-C): no sends after
        "stopped_ns": time.time_ns(),  # in-flight requests done
    }
    path = cfg.path / "loadgen" / f"{name}.locust.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))


class _Stopper:
    """Ends the run on the shape's end or on SIGINT/SIGTERM; a STOP from Locust's web UI before
    the end is an interruption too."""

    def __init__(self, env: Environment) -> None:
        self.done = gevent.event.Event()
        self.interrupted = False
        self.stopping_ns: int | None = None
        self.deadline_ns: int | None = None  # the scenario's end (set by _end_at)
        env.events.test_stopping.add_listener(lambda **_: self._stopping())
        env.events.test_stop.add_listener(lambda **_: self.done.set())
        for sig in (signal.SIGINT, signal.SIGTERM):
            gevent.signal_handler(sig, self._interrupt)

    def _stopping(self) -> None:
        if self.stopping_ns is None:
            self.stopping_ns = time.time_ns()
            # neither our deadline nor a signal stopped it, and well before the end: the web UI
            early = self.deadline_ns is not None and self.stopping_ns < self.deadline_ns - 5e8
            if early and not self.interrupted:
                self.interrupted = True
                print("  stopped from the web UI: recorded as an interruption", flush=True)

    def _interrupt(self) -> None:
        self.interrupted = True
        self._stopping()
        self.done.set()


def _start_web(env: Environment, cfg: LoadConfig) -> webui.LiveSeries | None:
    """Locust's web UI with the ``relaybench live`` tab (``loadtests.webui``), with ``--web``."""
    if not cfg.web:
        return None
    env.create_web_ui("127.0.0.1", cfg.web_port)
    print(f"  Locust web UI: http://127.0.0.1:{cfg.web_port}", flush=True)
    return webui.attach(env, cfg.path, cfg.target.name)


def _start_csv(env: Environment, cfg: LoadConfig) -> tuple[StatsCSVFileWriter, gevent.Greenlet]:
    """Locust's own CSVs (``locust/<target>_stats.csv``, ``_stats_history.csv``, ...), rewritten
    every second while the run goes, with the ``TTFT <target>`` and ``E2E <target>`` rows."""
    prefix = cfg.path / "locust" / cfg.target.name
    prefix.parent.mkdir(parents=True, exist_ok=True)
    writer = StatsCSVFileWriter(env, PERCENTILES_TO_REPORT, str(prefix), full_history=True)
    return writer, gevent.spawn(writer.stats_writer)


def _stop_csv(env: Environment, cfg: LoadConfig, running: tuple) -> None:
    """Stop the live writer, then write the final totals once (it only writes every second)."""
    writer, greenlet = running
    greenlet.kill()
    writer.close_files()
    final = StatsCSV(env, PERCENTILES_TO_REPORT)
    for suffix, write in (("stats", final.requests_csv), ("failures", final.failures_csv)):
        with (cfg.path / "locust" / f"{cfg.target.name}_{suffix}.csv").open("w", newline="") as f:
            write(csv.writer(f))


def run_local(cfg: LoadConfig) -> int:
    worker = worker_id(os.getpid())
    writer = RecordWriter(cfg.path, cfg.target.name, worker)
    sampler = CpuSampler(cfg.path, cfg.target.name, worker)
    ctx = LoadContext(cfg, worker, writer)
    env = Environment(
        user_classes=[make_user_class(ctx)],
        shape_class=ScenarioShape(cfg.shape),
        stop_timeout=cfg.stop_timeout_s,
    )
    runner = env.create_local_runner()
    stopper = _Stopper(env)
    env.events.test_stopping.add_listener(lambda **_: ctx.dispatcher.stop())
    live = _start_web(env, cfg)
    live_csv = _start_csv(env, cfg)
    t_start = time.monotonic()
    chores = [
        gevent.spawn(_housekeeping, ctx, sampler, env),
        gevent.spawn(_progress, env, cfg, t_start),
    ]
    _settle_memory()
    t0_ns = time.time_ns()
    ctx.start(t0_ns, index=0)
    if live:
        live.start(t0_ns)
    runner.start_shape()
    chores.append(gevent.spawn(_end_at, runner, stopper, t0_ns, cfg.shape.duration_s))
    stopper.done.wait(cfg.shape.duration_s + cfg.stop_timeout_s + 30)
    if stopper.interrupted:
        env.stop_timeout = 0  # Ctrl-C: stop now; what finished is already recorded
    runner.quit()
    gevent.killall(chores)
    _stop_csv(env, cfg, live_csv)
    sampler.sample(0)
    writer.close()
    sampler.close()
    if env.web_ui:
        env.web_ui.stop()
    _final_progress(env, cfg, t0_ns, stopper)
    _write_result(env, cfg, stopper, t0_ns, 1)
    return 130 if stopper.interrupted else 0


def _settle_memory() -> None:
    """Keep the collector's pauses off the measurements.

    Everything allocated so far (Locust, gevent, our modules: ~50k tracked objects) lives as
    long as the process; one full collection over it took 38-66 ms on a 2-core machine, a stall
    of every stream at once. Collected once here, before time zero, and frozen, it is never
    scanned again: a full collection during the run only sees what the run allocated.
    """
    gc.collect()
    gc.freeze()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_master(cfg: LoadConfig, config_path: Path) -> int:
    env = Environment(
        user_classes=[type("ChatUser", (ChatUser,), {"abstract": False, "host": cfg.target.url})],
        shape_class=ScenarioShape(cfg.shape),
        stop_timeout=cfg.stop_timeout_s,
    )
    port = cfg.master_port or _free_port()
    runner = env.create_master_runner(cfg.master_bind, port)
    stopper = _Stopper(env)
    argv = [sys.executable, "-m", "loadtests.worker", str(config_path), "--role", "worker"]
    procs = [
        subprocess.Popen(
            [*argv, "--master-port", str(port)],
            **owned_child(),  # we forward signals ourselves, by PID
        )
        for _ in range(cfg.processes)
    ]
    try:
        wanted = cfg.processes + cfg.remote_workers
        deadline = time.monotonic() + WORKERS_READY_TIMEOUT_S * (1 + 4 * bool(cfg.remote_workers))
        while len(runner.clients.ready) < wanted:
            if time.monotonic() > deadline or stopper.interrupted:
                print("error: Locust workers did not connect", file=sys.stderr, flush=True)
                return 1
            if any(p.poll() is not None for p in procs):
                print("error: a Locust worker exited before the run", file=sys.stderr, flush=True)
                return 1
            gevent.sleep(0.05)
        live = _start_web(env, cfg)
        live_csv = _start_csv(env, cfg)
        t_start = time.monotonic()
        progress = gevent.spawn(_progress, env, cfg, t_start)
        t0_ns = time.time_ns()
        runner.send_message(T0_MESSAGE, t0_ns)
        if live:
            live.start(t0_ns)
        runner.start_shape()
        ender = gevent.spawn(_end_at, runner, stopper, t0_ns, cfg.shape.duration_s)
        stopper.done.wait(cfg.shape.duration_s + cfg.stop_timeout_s + 30)
        # Every worker has stopped and sent its last stats (see run_worker). End them by PID:
        # Locust's quit message would wait behind a worker's post-stop pause of stop_timeout.
        # (Remote workers get Locust's quit message and exit after their stop_timeout pause.)
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGINT if stopper.interrupted else signal.SIGTERM)
        _wait_workers(procs)
        progress.kill()
        ender.kill()
        runner.quit()
        _stop_csv(env, cfg, live_csv)
        _final_progress(env, cfg, t0_ns, stopper)
        _write_result(env, cfg, stopper, t0_ns, wanted)
        if env.web_ui:
            env.web_ui.stop()
        return 130 if stopper.interrupted else 0
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()


def _wait_workers(procs: Sequence[subprocess.Popen[bytes]], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    for p in procs:
        while p.poll() is None and time.monotonic() < deadline:
            gevent.sleep(0.05)


def run_worker(cfg: LoadConfig, master_host: str, master_port: int) -> int:
    worker = worker_id(os.getpid())
    writer = RecordWriter(cfg.path, cfg.target.name, worker)
    sampler = CpuSampler(cfg.path, cfg.target.name, worker)
    ctx = LoadContext(cfg, worker, writer)
    env = Environment(user_classes=[make_user_class(ctx)], stop_timeout=cfg.stop_timeout_s)
    runner = env.create_worker_runner(master_host, master_port)
    runner.register_message(T0_MESSAGE, lambda msg, **_: ctx.start(msg.data, runner.worker_index))
    env.events.test_stopping.add_listener(lambda **_: ctx.dispatcher.stop())
    # Report the last requests before telling the master we stopped: without this they would
    # wait for the next 3-second report, which a quitting master never reads.
    env.events.test_stop.add_listener(lambda **_: runner._send_stats())
    interrupted = False

    def end(sig: int) -> None:
        """SIGTERM: the master is done with us; SIGINT: the run was interrupted."""
        nonlocal interrupted
        interrupted = interrupted or sig == signal.SIGINT
        env.stop_timeout = 0
        gevent.spawn(runner.quit)

    for sig in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(sig, end, sig)
    chore = gevent.spawn(_housekeeping, ctx, sampler, env)
    _settle_memory()
    runner.greenlet.join()
    chore.kill()
    sampler.sample(0)
    writer.close()
    sampler.close()
    return 130 if interrupted else 0


def main(argv: Sequence[str] | None = None) -> int:
    die_with_parent()
    parser = argparse.ArgumentParser(prog="python -m loadtests.worker")
    parser.add_argument("config", type=Path, help="LoadConfig JSON written by relaybench run")
    parser.add_argument("--role", choices=("local", "master", "worker"), default="local")
    parser.add_argument("--master-host", default="127.0.0.1")
    parser.add_argument("--master-port", type=int, default=5557)
    args = parser.parse_args(argv)
    del sys.argv[1:]  # Locust's web UI parses sys.argv as Locust options: give it none
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Our shapes ramp in one-second ticks on purpose; Locust's fast-spawn advice is noise here.
    logging.getLogger("locust.runners").setLevel(logging.ERROR)
    # The config file holds no API key (relaybench.credentials): it comes in our environment.
    cfg = replace(LoadConfig.load(args.config), api_key=os.environ.get(API_KEY_ENV) or None)
    if args.role == "local":
        return run_local(cfg)
    if args.role == "master":
        return run_master(cfg, args.config)
    return run_worker(cfg, args.master_host, args.master_port)


if __name__ == "__main__":
    sys.exit(main())
