"""Run a few requests through the load generator's real client path; print their records.

Executed as a subprocess by the tests (gevent must monkey-patch a fresh process):
``python tests/loadtests/probe.py URL TIMEOUT_S STREAM HEADERS_JSON...`` -> one JSON list.
Each record also has ``mock_stamps_ns``: the ``x_mock_emitted_ns`` of its content chunks, read
from the stream on the side, so tests can hold the record's timings against the mock's stamps.
"""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402
import time  # noqa: E402

import orjson  # noqa: E402
from geventhttpclient import HTTPClient  # noqa: E402

from loadtests.record import RecordBuilder  # noqa: E402
from loadtests.user import LoadContext, measure  # noqa: E402
from relaybench.run.config import LoadConfig, ShapeParams, Target  # noqa: E402
from relaybench.sse import SSEDecoder  # noqa: E402


class StampedBuilder(RecordBuilder):
    """A record builder that also keeps the mock's stamp of every content chunk."""

    def __init__(self, **fields: object) -> None:
        super().__init__(**fields)
        self.stamps: list[int] = []
        self._side = SSEDecoder()

    def body(self, data: bytes, pc_ns: int, wall_ns: int) -> None:
        for event in self._side.feed(data) if self.stream else ():
            try:
                chunk = orjson.loads(event.data)
                if chunk["choices"][0]["delta"].get("content"):
                    self.stamps.append(chunk["x_mock_emitted_ns"])
            except (orjson.JSONDecodeError, LookupError, TypeError, AttributeError):
                pass  # [DONE], a planted malformed line: the record says what they were
        super().body(data, pc_ns, wall_ns)


def main() -> None:
    url, timeout, stream = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "stream"
    out = []
    for seq, raw in enumerate(sys.argv[4:]):
        cfg = LoadConfig(
            run_dir="/nonexistent",
            target=Target("probe", url, stream=stream, kind="mock", stamps=True),
            shape=ShapeParams("steady", 1, 1.0),
            timeout_s=timeout,
            connect_timeout_s=timeout,
            max_tokens=(20, 20),
            extra_headers=orjson.loads(raw),
        )
        ctx = LoadContext(cfg, "w0", writer=None)  # type: ignore[arg-type]
        ctx.start(time.time_ns(), 0)
        body, max_tokens = ctx.workload.request(seq, stream=stream)
        http = HTTPClient(
            ctx.host, ctx.port, concurrency=1, network_timeout=timeout, connection_timeout=timeout
        )
        b = StampedBuilder(
            target="probe",
            worker="w0",
            seq=seq,
            stream=stream,
            start_ns=time.time_ns(),
            start_pc=time.perf_counter_ns(),
            max_tokens=max_tokens,
        )
        measure(http, ctx, b, orjson.dumps(body))
        http.close()
        out.append({**b.record(), "mock_stamps_ns": b.stamps})
    sys.stdout.buffer.write(orjson.dumps(out))


if __name__ == "__main__":
    main()
