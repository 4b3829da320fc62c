"""TLS to a target is verified (chain and host name) unless --insecure is asked for."""

from __future__ import annotations

import itertools
import ssl
from pathlib import Path

import pytest
import trustme

from loadtests import client
from tests.hardening.helpers import records, run
from tests.hardening.tlsserver import TLSChatServer

KEY = "rk-tls-test-0123456789"
DURATION_S = 3.0


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _server(ca: trustme.CA, name: str) -> TLSChatServer:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(ctx)
    return TLSChatServer(ctx)


def _ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def _bench(url: str, out: Path, *extra: str):
    return run(
        "run", "--target", f"tls={url}", "--users", "1", "--duration", f"{DURATION_S:g}",
        "--max-tokens", "5", "--api-key", KEY, "--out", str(out), *extra,
    )  # fmt: skip


def _most_attempts(seconds: float) -> int:
    """How many connects one user can make in ``seconds`` under the documented back-off."""
    elapsed = 0.0
    for n in itertools.count(1):
        elapsed += client.connect_pause_s(n)
        if elapsed > seconds:
            return n


def test_a_trusted_certificate_for_another_host_gets_no_request(ca, tmp_path: Path) -> None:
    with _server(ca, "other.example") as server:
        done = _bench(server.url, tmp_path / "run", "--ca-file", str(_ca_file(ca, tmp_path)))
        assert server.requests == []  # no request, so the key never left the harness
        assert server.handshake_failures >= 1
    recs = records(tmp_path / "run", "tls")
    assert recs, done.stdout + done.stderr
    assert all(r["error"] == "connect" for r in recs)
    detail = recs[0]["error_detail"]
    assert detail.startswith("TLS: certificate verify failed")
    assert "mismatch" in detail and "not valid for '127.0.0.1'" in detail
    # connect errors back off: not a tight loop of hundreds of handshakes
    assert len(recs) <= _most_attempts(DURATION_S + 1.0)
    assert server.handshake_failures <= _most_attempts(DURATION_S + 1.0) + 1


def test_the_right_host_name_is_served(ca, tmp_path: Path) -> None:
    with _server(ca, "127.0.0.1") as server:
        done = _bench(server.url, tmp_path / "run", "--ca-file", str(_ca_file(ca, tmp_path)))
        seen = list(server.requests)
    recs = records(tmp_path / "run", "tls")
    assert done.returncode == 0, done.stderr
    assert recs and all(r["ok"] for r in recs), recs[:2]
    assert seen == [f"Bearer {KEY}"] * len(recs)


def test_a_private_ca_is_not_trusted_without_ca_file(ca, tmp_path: Path) -> None:
    with _server(ca, "127.0.0.1") as server:
        _bench(server.url, tmp_path / "run")
        assert server.requests == []
    recs = records(tmp_path / "run", "tls")
    assert recs and all(r["error"] == "connect" for r in recs)
    assert recs[0]["error_detail"].startswith("TLS: certificate verify failed")


def test_insecure_is_an_explicit_warned_opt_in(ca, tmp_path: Path) -> None:
    with _server(ca, "other.example") as server:
        done = _bench(server.url, tmp_path / "run", "--insecure")
        seen = len(server.requests)
    assert done.returncode == 0, done.stderr
    assert "warning: --insecure" in done.stderr
    recs = records(tmp_path / "run", "tls")
    assert recs and all(r["ok"] for r in recs) and seen == len(recs)


def test_an_unreadable_ca_file_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    done = run("run", "--target", "t=https://127.0.0.1:9", "--ca-file", str(missing))
    assert done.returncode == 2
    assert f"--ca-file {missing}" in done.stderr
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    done = run("run", "--target", "t=https://127.0.0.1:9", "--ca-file", str(junk))
    assert done.returncode == 2 and f"--ca-file {junk}" in done.stderr
