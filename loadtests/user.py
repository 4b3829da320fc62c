"""The Locust user: one OpenAI chat completion per task, streamed and timed chunk by chunk.

The HTTP client is geventhttpclient (what Locust's FastHttpUser wraps), used directly: one
keep-alive ``HTTPClient`` per user, the request body serialised once with orjson, and the body
read as raw socket reads fed to the project's SSE decoder (``loadtests.record``). FastHttpUser's
session would add its own Locust request row, header copies and a ``stream=True`` path that
stops at the headers; requests/HttpUser costs several times more CPU per request (see the
README's ``loadtests`` section for the measured per-request cost).

Every request becomes one record (``loadtests.record``) and two rows in Locust's own statistics,
``TTFT <target>`` and ``E2E <target>``, so the web UI and CSVs show them live; only ``E2E`` is a
Locust request (with the failure's cause as its error), so "Aggregated" counts each request
once. Exact percentiles come from the records, not from Locust's rounded buckets.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import gevent
import gevent.event
import orjson
from gevent import GreenletExit
from geventhttpclient import HTTPClient
from locust import User, task
from locust.exception import CatchResponseError

from loadtests import client, pacing, schedule, shapes, traffic
from loadtests.record import RecordBuilder
from loadtests.sink import RecordWriter
from loadtests.workload import Workload, WorkloadConfig
from relaybench import credentials, records
from relaybench.run.config import LoadConfig

READ_SIZE = 65536
INTERRUPTED_DETAIL = "the run was stopped while this request was in flight"


class LoadContext:
    """Per-process state shared by the users of one target: config, sink, workload, schedule."""

    def __init__(self, config: LoadConfig, worker: str, writer: RecordWriter) -> None:
        self.config = config
        self.worker = worker
        self.writer = writer
        self.target = config.target
        self.index = 0
        self.workload: Workload | None = None
        parts = urlsplit(config.target.chat_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = parts.scheme == "https"
        self.path = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if config.target.stream else "application/json",
            **config.extra_headers,
        }
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        self.headers = headers
        self.secrets = (config.api_key,) if config.api_key else ()  # kept out of every text
        self.ttft_name = f"TTFT {config.target.name}"
        self.e2e_name = f"E2E {config.target.name}"
        self.t0_ns: int | None = None
        self.started = gevent.event.Event()
        self._seq = 0
        self._arrivals: Iterator[tuple[int, float | None, traffic.TraceRow | None]] | None = None
        self.trace = traffic.TraceReplay(config) if config.shape.scenario == "trace" else None
        self.chat: traffic.ChatSessions | None = None
        self.dispatcher = traffic.Dispatcher(self.next_arrival)  # open loop: who sends next

    def start(self, t0_ns: int, index: int) -> None:
        """Time zero of the run (the same on every process; the schedule hangs from it) and
        this process's index among the load generators (its share of schedule and workload)."""
        self.t0_ns = t0_ns
        self.index = index
        cfg = self.config
        self.workload = Workload(
            WorkloadConfig(seed=cfg.seed, model=cfg.model, max_tokens=cfg.max_tokens), index
        )
        params = self.config.shape
        if self.trace is not None:
            self._arrivals = self.trace.arrivals(t0_ns, index)
        elif params.scenario == "chat":
            self.chat = traffic.ChatSessions(cfg, index)
        elif params.open_loop:
            segments = shapes.rate_segments(params)
            offsets = schedule.arrival_offsets(
                segments, poisson=params.scenario == "poisson", seed=self.config.seed
            )
            mine = schedule.share(offsets, self.index, self.config.generators)
            self._arrivals = iter(
                [
                    (schedule.intended_ns(t0_ns, o), schedule.rate_at(segments, o), None)
                    for o in mine
                ]
            )
        self.started.set()

    def next_seq(self) -> int:
        seq, self._seq = self._seq, self._seq + 1
        return seq

    def next_arrival(self) -> tuple[int, float | None, traffic.TraceRow | None] | None:
        assert self._arrivals is not None
        return next(self._arrivals, None)

    def prepare(self, arrival: traffic.Arrival) -> tuple[dict, dict, bytes] | None:
        """A trace row's request, built before its time (a session row's waits: its history
        may still grow)."""
        row = arrival[2]
        if row is None or row.session or self.trace is None:
            return None
        return self.trace.prepare(row, stream=self.target.stream)

    def step_at(self, wall_ns: int) -> int | None:
        if self.config.shape.scenario != "step" or self.t0_ns is None:
            return None
        stage = shapes.stage_at(self.config.shape, (wall_ns - self.t0_ns) / 1e9)
        return stage.step if stage else self.config.shape.steps - 1


def _read_some(resp: Any) -> bytes | None:
    """The body bytes available now (waiting for at least one read); b"" at the end of the
    message, None when the connection closed before the end."""
    buf = resp._body_buffer
    while True:
        if buf:
            data = bytes(buf)
            del buf[:]
            return data
        if resp.message_complete:
            return b""
        sock = resp._sock
        if sock is None:
            return None
        data = sock.recv(READ_SIZE)
        if not data:
            return None
        resp.feed(data)


def measure(
    http: HTTPClient, ctx: LoadContext, builder: RecordBuilder, payload: bytes
) -> str | None:
    """Send one request and feed everything that arrives to ``builder``; returns an error
    response's ``Retry-After`` header (for the retry policy), else None."""
    perf, wall = time.perf_counter_ns, time.time_ns
    resp = None
    retry_after = None
    try:
        resp = http.request("POST", ctx.path, body=payload, headers=ctx.headers)
        builder.headers(resp.status_code, perf())
        if resp.status_code >= 400:
            retry_after = resp.get("Retry-After")
        while True:
            data = _read_some(resp)
            pc, now = perf(), wall()
            if data is None:
                if builder.stream and not builder.http_error:
                    builder.finish(pc, now)  # no [DONE] -> truncated
                else:
                    builder.fail(records.TRUNCATED, "connection closed before the end", pc)
                return retry_after
            if not data:
                builder.finish(pc, now)
                return retry_after
            builder.body(data, pc, now)
    except Exception as exc:
        got_response = resp is not None
        error = records.from_exception(exc, connected=got_response)
        builder.fail(error, client.describe(exc), perf())
    finally:
        if resp is not None and not resp.message_complete:
            resp.release()  # an unfinished body: the socket is closed, never reused
    return retry_after


class ChatUser(User):
    """Subclassed per run by ``make_user_class`` with the run's ``LoadContext``."""

    abstract = True
    ctx: LoadContext

    def wait_time(self) -> float:
        """No wait between requests, except a chat user's think time before its next turn."""
        return traffic.think_left(self)

    def on_start(self) -> None:
        self.backoff = client.ConnectBackoff()
        self.pacing = pacing.ErrorPause(self.ctx.config, self.ctx.index)
        self.http = client.open_client(self.ctx)

    def on_stop(self) -> None:
        self.http.close()

    @task
    def chat(self) -> None:
        ctx = self.ctx
        if not ctx.started.is_set():
            ctx.started.wait()
        if ctx.chat is not None:  # --scenario chat: one turn of this user's session
            ctx.chat.turn(self)
            return
        intended = rate = row = prepared = None
        if ctx.config.shape.open_loop:
            due = ctx.dispatcher.next(ctx.prepare)  # our turn, then the arrival's time
            if due is None:  # schedule done: idle until the shape ends the run
                gevent.sleep(0.5)
                return
            (intended, rate, row), prepared = due
        stream = ctx.target.stream
        if row is not None:  # --scenario trace
            assert ctx.trace is not None
            body, fields, payload = prepared or ctx.trace.prepare(row, stream=stream)
            _, answer = self.send(
                ctx.next_seq(), payload, row.output_tokens, rate=rate, intended_ns=intended,
                keep_text=bool(row.session), **fields,
            )  # fmt: skip
            ctx.trace.answered(row, body, answer)
            return
        assert ctx.workload is not None
        seq = ctx.next_seq()
        body, max_tokens = ctx.workload.request(seq, stream=stream)
        self.send(seq, orjson.dumps(body), max_tokens, rate=rate, intended_ns=intended)

    def send(
        self,
        seq: int,
        payload: bytes,
        max_tokens: int | None,
        *,
        keep_text: bool = False,
        **fields: Any,
    ) -> tuple[dict[str, Any], str]:
        """One user request, its retries included (``--retry-policy``): measured from the first
        attempt, written as one record, reported to Locust. Returns the record and, with
        ``keep_text``, the answer's text."""
        ctx = self.ctx
        target = ctx.target
        start_ns, start_pc = time.time_ns(), time.perf_counter_ns()
        cfg = ctx.config
        attempts = traffic.Attempts(cfg.traffic.retry, cfg.seed, ctx.index, seq, start_pc)
        while True:
            builder = RecordBuilder(
                target=target.name,
                worker=ctx.worker,
                seq=seq,
                stream=target.stream,
                start_ns=start_ns,
                start_pc=start_pc,
                users=self.environment.runner.user_count if self.environment.runner else 0,
                step=ctx.step_at(start_ns),
                max_tokens=max_tokens,
                secrets=ctx.secrets,
                **fields,
            )
            if keep_text:
                builder.text = []
            try:
                retry_after = measure(self.http, ctx, builder, payload)
            except GreenletExit:  # the run was stopped mid-request: keep what had arrived
                builder.fail(records.INTERRUPTED, INTERRUPTED_DETAIL, time.perf_counter_ns())
                rec = builder.record()
                attempts.ended(rec, None)  # a retried request lists its attempts, this one too
                ctx.writer.write(rec)
                self._report(ctx, rec)
                raise
            rec = builder.record()
            wait = attempts.ended(rec, retry_after)
            if wait is None:
                break
            try:
                attempts.wait(wait)
            except GreenletExit:  # stopped between attempts: the request ends as it stood
                ctx.writer.write(rec)
                self._report(ctx, rec)
                raise
        pause = self.pacing.after(rec, retry_after)  # in the record, after its timings
        ctx.writer.write(rec)
        self._report(ctx, rec)
        self.backoff.after(rec["error"])  # a pause after connect errors (loadtests.client)
        pacing.pause(pause)  # after other errors (loadtests.pacing)
        return rec, "".join(builder.text or ())

    def _report(self, ctx: LoadContext, rec: dict[str, Any]) -> None:
        """One Locust request per record (``E2E``, failed with its cause); the ``TTFT`` row is
        a timing logged into its own row only, so Locust's totals count each request once."""
        fire = self.environment.events.request.fire
        error = None
        if rec["error"]:
            cause = records.cause(rec["error"], rec["status"], rec["error_detail"])
            error = CatchResponseError(credentials.redacted_text(cause, ctx.secrets))
        if rec["ttft_ms"] is not None:
            self.environment.stats.get(ctx.ttft_name, "TTFT").log(rec["ttft_ms"], 0)
        fire(
            request_type="E2E",
            name=ctx.e2e_name,
            response_time=rec["e2e_ms"] or 0.0,
            response_length=rec["output_tokens"],
            exception=error,
            context={},
        )


def make_user_class(ctx: LoadContext) -> type[ChatUser]:
    """A concrete user class bound to this run's context (Locust wants classes, not instances)."""
    return type("ChatUser", (ChatUser,), {"ctx": ctx, "host": ctx.target.url, "abstract": False})
