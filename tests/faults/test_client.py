"""The scorecard's client against tiny servers: what it sends, and how it records the end."""

from __future__ import annotations

import asyncio

import orjson

from relaybench.faults.client import Client, chat_body, chat_url, tag

from .proxies import ThreadServer


async def echo(head: bytes, body: bytes, reader: asyncio.StreamReader, writer) -> None:
    """Answers with the request's head and body as JSON."""
    answer = orjson.dumps({"head": head.decode(), "body": orjson.loads(body)})
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(answer), answer)
    )
    await writer.drain()


async def cut_mid_body(head: bytes, body: bytes, reader: asyncio.StreamReader, writer) -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 999\r\n\r\n"
    )
    writer.write(b'data: {"choices":[{"delta":{"content":"half"}}]}\n\n')
    await writer.drain()


async def silent(head: bytes, body: bytes, reader: asyncio.StreamReader, writer) -> None:
    await reader.read()  # never answers; returns when the client closes


def test_the_body_carries_the_tag_the_key_and_the_chosen_model() -> None:
    with ThreadServer(echo) as server:
        body = chat_body({"fault": "hang", "id": "x-1"})
        seen = asyncio.run(Client(server.url, "sk-1", "gw-model").chat(body, deadline_s=5))
    sent = seen.json()
    assert sent["body"]["model"] == "gw-model"
    assert sent["body"]["messages"][-1]["content"].endswith("[[mock fault=hang id=x-1]]")
    assert sent["body"]["stream_options"] == {"include_usage": True}
    assert "authorization: Bearer sk-1" in sent["head"]
    assert "POST /v1/chat/completions " in sent["head"]
    assert seen.end == "complete" and seen.status == 200


def test_a_body_cut_short_is_a_cut_and_a_silent_server_a_timeout() -> None:
    with ThreadServer(cut_mid_body) as server:
        seen = asyncio.run(Client(server.url).chat(chat_body({}), deadline_s=5))
    assert seen.end == "cut" and seen.content == "half" and not seen.looks_complete
    with ThreadServer(silent) as server:
        seen = asyncio.run(Client(server.url).chat(chat_body({}), deadline_s=0.3))
    assert seen.end == "timeout" and seen.status is None


def test_urls_and_tags() -> None:
    assert chat_url("http://h:1") == chat_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"
    assert tag({"fault": "status:429", "seed": 3}) == "[[mock fault=status:429 seed=3]]"
