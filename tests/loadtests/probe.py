"""Run a few requests through the load generator's real client path; print their records.

Executed as a subprocess by the tests (gevent must monkey-patch a fresh process):
``python tests/loadtests/probe.py URL TIMEOUT_S STREAM HEADERS_JSON...`` -> one JSON list.
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
        b = RecordBuilder(
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
        out.append(b.record())
    sys.stdout.buffer.write(orjson.dumps(out))


if __name__ == "__main__":
    main()
