"""A target that quotes the API key back (in a 401's body, in a stream's error event) does not
get it into any output: not a file of the run folder, not stdout or stderr."""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.hardening.helpers import records, run


class _Echo(BaseHTTPRequestHandler):
    """Answers every POST by quoting its Authorization header: as a 401 (``mode`` "status") or
    as a 200 stream whose only event is an error (``mode`` "stream")."""

    mode = "status"
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        said = self.headers.get("Authorization") or "nothing"
        if self.mode == "status":
            body = f'{{"error":{{"message":"invalid key: {said}"}}}}'.encode()
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
        else:
            event = f'{{"error":{{"message":"upstream refused {said}"}}}}'
            body = f"data: {event}\n\ndata: [DONE]\n\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(params=["status", "stream"])
def echo(request) -> Iterator[tuple[str, str]]:
    """(mode, url) of an echo server on 127.0.0.1 (an OS-chosen port), closed after the test."""
    handler = type("Echo", (_Echo,), {"mode": request.param})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield request.param, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_key_quoted_by_the_target_is_in_no_output(echo, tmp_path: Path) -> None:
    mode, url = echo
    key = "sk-echo-" + secrets.token_hex(12)
    out = tmp_path / "run"
    done = run(
        "run", "--target", f"echo={url}", "--api-key", key, "--users", "2", "--duration", "2",
        "--max-tokens", "5", "--out", str(out),
    )  # fmt: skip
    recs = records(out, "echo")
    assert recs, done.stderr  # the run happened: requests were sent and recorded
    want = "HTTP 401" if mode == "status" else "upstream refused"
    assert all(r["ok"] is False and want in r["error_detail"] for r in recs), recs[:1]
    assert all("Bearer ***" in r["error_detail"] for r in recs), recs[:1]  # quoted, key hidden
    assert (out / "summary.json").exists() and (out / "report.md").exists()
    assert list((out / "locust").glob("*_failures.csv")), sorted(out.rglob("*"))
    needle = key.encode()
    holding = [p for p in out.rglob("*") if p.is_file() and needle in p.read_bytes()]
    assert holding == []
    assert key not in done.stdout and key not in done.stderr
    # the cause reached the console and Locust's failures with the key hidden, not dropped
    failures = "".join(p.read_text() for p in (out / "locust").glob("*_failures.csv"))
    assert re.search(r"Bearer \*\*\*", failures), failures
