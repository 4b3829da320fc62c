"""Points 4 and 5: request validation (400 naming the field, 413) and the CORS allowlist."""

from __future__ import annotations

import socket

import httpx
import pytest

from .conftest import bare_relay

ORIGIN = "https://app.example.com"


@pytest.fixture(scope="module")
def server(start_shared, shared_mock):
    return bare_relay(
        start_shared,
        shared_mock.url,
        {"RELAY_ALLOWED_ORIGINS": f"{ORIGIN},https://other.example.com"},
    )


def post(server, content, headers=None, path="/v1/chat/completions"):
    return httpx.post(server.url + path, content=content, headers=headers or {})


@pytest.mark.parametrize(
    "body, param",
    [
        (b"", "body"),
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        (b'{"model": "m"}', "messages"),
        (b'{"messages": []}', "messages"),
        (b'{"messages": "hi"}', "messages"),
        (b'{"messages": ["hi"]}', "messages[0]"),
        (b'{"messages": [{"content": "hi"}]}', "messages[0].role"),
        (b'{"messages": [{"role": "wizard", "content": "hi"}]}', "messages[0].role"),
        (b'{"messages": [{"role": "user"}]}', "messages[0].content"),
        (b'{"messages": [{"role": "user", "content": 5}]}', "messages[0].content"),
        (
            b'{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": null}]}',
            "messages[1].content",
        ),
        (b'{"messages": [{"role": "user", "content": "a"}], "model": 4}', "model"),
        (b'{"messages": [{"role": "user", "content": "a"}], "stream": "yes"}', "stream"),
        (b'{"messages": [{"role": "user", "content": "a"}], "temperature": 9}', "temperature"),
        (b'{"messages": [{"role": "user", "content": "a"}], "max_tokens": 0}', "max_tokens"),
        (
            b'{"messages": [{"role": "user", "content": "a"}], "stream_options": 1}',
            "stream_options",
        ),
    ],
)
def test_bad_bodies_get_400_naming_the_field(server, body, param):
    for path in ("/v1/chat/completions", "/api/chat/stream"):
        if path == "/api/chat/stream" and param in ("stream", "stream_options"):
            continue  # the classic endpoint ignores fields it does not forward
        response = post(server, body, path=path)
        assert response.status_code == 400, (path, response.text)
        error = response.json()["error"]
        assert error["param"] == param
        assert error["type"] == "invalid_request_error"
        assert param.split("[")[0] in error["message"]


def test_body_over_one_mib_is_413_by_length_and_by_stream(server):
    big = b'{"messages": [{"role": "user", "content": "' + b"x" * (1024 * 1024) + b'"}]}'
    response = post(server, big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"

    def chunks():  # no Content-Length: the relay must count as it reads
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    response = post(server, chunks())
    assert response.status_code == 413


def test_body_just_under_the_limit_is_accepted(server, kit):
    filler = "x" * (1024 * 1024 - 200)
    body = b'{"messages": [{"role": "user", "content": "' + filler.encode() + b'"}]}'
    assert len(body) <= 1024 * 1024
    response = post(server, body)
    assert response.status_code == 200


def test_unknown_path_and_method_are_json(server):
    response = httpx.get(server.url + "/nope")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    response = httpx.get(server.url + "/v1/chat/completions")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_bad_content_length_is_400(server):
    with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1]))) as conn:
        conn.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Content-Length: 6\r\n\r\nhello"
        )
        reply = conn.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400")


def test_preflight_allowed_origin(server):
    response = httpx.options(
        server.url + "/v1/chat/completions",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"]
    assert response.headers["vary"] == "Origin"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"},
        {"Origin": ORIGIN, "Access-Control-Request-Method": "DELETE"},
        {
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-secret-admin",
        },
    ],
    ids=["origin", "method", "header"],
)
def test_preflight_refused_without_allow_origin(server, headers):
    response = httpx.options(server.url + "/v1/chat/completions", headers=headers)
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_actual_request_cors_headers(server, kit):
    allowed = post(server, kit.chat(stream=False), {"Origin": ORIGIN})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "X-Request-ID" in allowed.headers["access-control-expose-headers"]
    denied = post(server, kit.chat(stream=False), {"Origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in denied.headers
    no_origin = post(server, kit.chat(stream=False))
    assert "access-control-allow-origin" not in no_origin.headers
