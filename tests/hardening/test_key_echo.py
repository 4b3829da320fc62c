"""A target that quotes the API key back (in a 401's body, in a stream's error event) does not
get it into any output: not a file of the run folder, not stdout or stderr. Nor do the
credentials of a ``--target`` URL (``https://user:password@host``)."""

from __future__ import annotations

import re
import secrets
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from relaybench import credentials
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
    yield from _serve(request.param)


def _serve(mode: str) -> Iterator[tuple[str, str]]:
    handler = type("Echo", (_Echo,), {"mode": mode})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield mode, f"http://127.0.0.1:{server.server_address[1]}"
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


@pytest.fixture
def status_echo() -> Iterator[tuple[str, str]]:
    yield from _serve("status")


def _files_holding(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_a_target_urls_credentials_are_in_no_output(status_echo, tmp_path: Path) -> None:
    password = "pw-" + secrets.token_hex(8)
    url = status_echo[1].replace("http://", f"http://me:{password}@")
    out = tmp_path / "run"
    done = run(
        "run", "--target", f"echo={url}", "--users", "1", "--duration", "1",
        "--max-tokens", "5", "--out", str(out),
    )  # fmt: skip
    assert records(out, "echo"), done.stderr  # the target was measured
    meta = (out / "run.json").read_text()
    assert f"echo=http://***@127.0.0.1:{url.rsplit(':', 1)[1]}" in meta  # the command
    assert '"url": "http://***@127.0.0.1' in meta  # the target's entry (the reports show it)
    assert _files_holding(out, password) == []
    assert password not in done.stdout and password not in done.stderr


def test_an_unreachable_targets_credentials_are_not_echoed() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens there
    password = "pw-" + secrets.token_hex(8)
    done = run("run", "--target", f"t=http://me:{password}@127.0.0.1:{port}", "--duration", "1")
    assert done.returncode == 2, done.stderr
    assert f"target t at http://***@127.0.0.1:{port} is unreachable" in done.stderr
    assert password not in done.stdout + done.stderr


def test_a_malformed_target_spec_hides_its_credentials() -> None:
    done = run("run", "--target", "http://me:hunter2-pw@127.0.0.1:9")  # no NAME=
    assert done.returncode == 2 and "use NAME=URL" in done.stderr, done.stderr
    assert "hunter2-pw" not in done.stderr and "***@127.0.0.1:9" in done.stderr


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "t=https://me:p@ss@h:8/v1?to=a@b",
            "t=https://***@h:8/v1?to=a@b",
        ),  # the last @ of the host
        ("at http://me@[::1]:9/x: refused", "at http://***@[::1]:9/x: refused"),
        ("redis://:pw@h:6379/0", "redis://***@h:6379/0"),
        ("http://h/a@b and no credentials", "http://h/a@b and no credentials"),
    ],
)
def test_redact_url(text: str, shown: str) -> None:
    assert credentials.redact_url(text) == shown


@pytest.mark.parametrize(
    ("word", "shown"),
    [
        ("Authorization: Bearer sk-abc", "Authorization: ***"),
        ("--header=x-api-key:sk-abc", "--header=x-api-key: ***"),
        ("Cookie: session=1", "Cookie: ***"),
        ("X-Mock-Fault: status:429", "X-Mock-Fault: status:429"),  # not a credential
    ],
)
def test_credential_headers_are_hidden_in_the_stored_command(word: str, shown: str) -> None:
    assert credentials.redacted_words(["--header", word], []) == ["--header", shown]


def test_a_bad_target_url_error_hides_its_credentials() -> None:
    done = run("run", "--target", "t=ftp://me:hunter2-pw@127.0.0.1:9")
    assert done.returncode == 2 and "is not an http(s) URL" in done.stderr, done.stderr
    assert "hunter2-pw" not in done.stderr
