"""Every bad input gets a 4xx with an OpenAI-shaped error naming the problem, never a 500."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import httpx
import pytest

from mock_upstream.cli import build_parser, config_from_args
from relaybench.errors import UsageError

from .conftest import CHAT

CHAT_URL = "/v1/chat/completions"


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    assert {"message", "type", "code"} <= set(body["error"])
    return body["error"]


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (b'"a string"', "invalid_json"),
        ('{"messages": "\u00ff"'.encode("latin-1"), "invalid_json"),  # not UTF-8
    ],
)
def test_invalid_json(mock_url: str, raw: bytes, code: str) -> None:
    r = httpx.post(mock_url + CHAT_URL, content=raw, headers={"content-type": "application/json"})
    assert _error(r, 400)["code"] == code


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": None}, "messages"),
        ({"messages": ["hi"]}, "messages[0]"),
        ({"messages": [{"content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [1]}]}, "messages[0].content"),
        ({"messages": CHAT, "stream": "yes"}, "stream"),
        ({"messages": CHAT, "model": 3}, "model"),
        ({"messages": CHAT, "model": ""}, "model"),
        ({"messages": CHAT, "max_tokens": 0}, "max_tokens"),
        ({"messages": CHAT, "max_tokens": "10"}, "max_tokens"),
        ({"messages": CHAT, "max_tokens": True}, "max_tokens"),
        ({"messages": CHAT, "max_completion_tokens": -1}, "max_completion_tokens"),
        ({"messages": CHAT, "temperature": "hot"}, "temperature"),
        ({"messages": CHAT, "n": 2}, "n"),
        ({"messages": CHAT, "stream": True, "stream_options": []}, "stream_options"),
        (
            {"messages": CHAT, "stream": True, "stream_options": {"include_usage": 1}},
            "stream_options.include_usage",
        ),
        ({"messages": CHAT, "stream_options": {"include_usage": True}}, "stream_options"),
    ],
)
def test_bad_chat_fields_name_the_field(mock_url: str, body: dict, param: str) -> None:
    error = _error(httpx.post(mock_url + CHAT_URL, json=body), 400)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert param.split("[")[0].split(".")[0] in error["message"]


@pytest.mark.parametrize("body", [{}, {"prompt": 3}, {"prompt": []}, {"prompt": [1, "a"]}])
def test_bad_legacy_prompt(mock_url: str, body: dict) -> None:
    error = _error(httpx.post(mock_url + "/v1/completions", json=body), 400)
    assert error["param"] == "prompt"


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Mock-TTFT-Ms", "soon"),
        ("X-Mock-TTFT-Ms", "-5"),
        ("X-Mock-TTFT-Ms", "nan"),
        ("X-Mock-ITL-Ms", "inf"),
        ("X-Mock-Output-Tokens", "0"),
        ("X-Mock-Output-Tokens", "2.5"),
        ("X-Mock-Output-Tokens", "1000000000"),
        ("X-Mock-Seed", "abc"),
        ("X-Mock-Seed", "-1"),
    ],
)
def test_bad_override_headers_name_the_header(mock_url: str, header: str, value: str) -> None:
    r = httpx.post(mock_url + CHAT_URL, json={"messages": CHAT}, headers={header: value})
    error = _error(r, 400)
    assert error["param"] == header and header in error["message"]
    assert error["code"] == "invalid_header"


def test_body_over_one_mib_is_413(mock_url: str) -> None:
    big = {"messages": [{"role": "user", "content": "x" * (1 << 20)}]}
    error = _error(httpx.post(mock_url + CHAT_URL, json=big), 413)
    assert "bytes" in error["message"]


def test_chunked_body_over_one_mib_is_413(mock_url: str) -> None:
    """Without Content-Length the limit is enforced while reading."""

    def pieces():
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"y" * 65536
        yield b'"}]}'

    r = httpx.post(mock_url + CHAT_URL, content=pieces())
    _error(r, 413)


def test_bad_inputs_are_counted_and_the_server_stays_healthy(start_server, get_stats) -> None:
    mock = start_server("mock_upstream", "--ttft-ms", "0", "--itl-ms", "0")
    for raw in (b"{", b"{}", b'{"messages": []}'):
        httpx.post(mock.url + CHAT_URL, content=raw)
    stats = get_stats(mock.url)
    assert stats["bad_requests"] == 3 and stats["requests"] == 3 and stats["completed"] == 0
    ok = httpx.post(mock.url + CHAT_URL, json={"messages": CHAT})
    assert ok.status_code == 200


def test_garbage_on_the_socket_does_not_break_the_server(mock_url: str) -> None:
    host, port = mock_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        sock.recv(1024)
    assert httpx.get(mock_url + "/health").status_code == 200


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--itl-ms", "-1"], "--itl-ms"),
        (["--tokens-per-chunk", "0"], "--tokens-per-chunk"),
        (["--fault-rate", "explode=0.1"], "--fault-rate"),
        (["--fault-rate", "status:429=2"], "--fault-rate"),
        (["--max-queue", "-1"], "--max-queue"),
        (["--port", "70000"], "--port"),
        (["--workers", "0"], "--workers"),
    ],
)
def test_bad_flag_values_are_usage_errors(args: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        config_from_args(build_parser().parse_args(args))


def test_bad_flags_exit_2_with_a_message_and_no_traceback() -> None:
    for args, message in [
        (["--itl-ms", "-1"], "--itl-ms"),
        (["--ttft-dist", "gamma"], "--ttft-dist"),
    ]:
        proc = subprocess.run(
            [sys.executable, "-m", "mock_upstream", "--port", "0", *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 2
        assert message in proc.stderr
        assert "Traceback" not in proc.stderr


def _big_body() -> bytes:
    return b'{"messages":[{"role":"user","content":"' + b"x" * (2 << 20) + b'"}]}'


async def _chunked(body: bytes):
    for k in range(0, len(body), 65536):
        yield body[k : k + 65536]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_413_is_readable_on_a_keep_alive_connection(mock_url: str, chunked: bool) -> None:
    """A 2 MiB body is read to its end and dropped, so the client reads the 413 every time."""

    async def tries() -> list[int]:
        body = _big_body()
        statuses = []
        async with httpx.AsyncClient(timeout=15) as client:
            for _ in range(20):
                content = _chunked(body) if chunked else body
                r = await client.post(mock_url + CHAT_URL, content=content)
                assert r.json()["error"]["code"] == "request_too_large"
                statuses.append(r.status_code)
        return statuses

    assert asyncio.run(tries()) == [413] * 20


def test_413_keeps_the_connection_when_the_body_was_read(mock_url: str) -> None:
    with httpx.Client(timeout=15) as client:
        assert client.post(mock_url + CHAT_URL, content=_big_body()).status_code == 413
        assert "connection" not in client.post(mock_url + CHAT_URL, content=_big_body()).headers
        assert client.post(mock_url + CHAT_URL, json={"messages": CHAT}).status_code == 200


def test_body_declared_over_the_drain_bound_is_refused_at_once(mock_url: str) -> None:
    """Beyond 8 MiB the mock does not read the body: 413 at once, and the connection closes."""
    host, port = mock_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (9 << 20)
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b"connection: close" in head.lower()
    assert b"request_too_large" in body
