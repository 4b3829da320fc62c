"""Fixtures for the mock's tests: a shared default mock, and an SSE stream reader."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest

from relaybench.procs import ServerProcess
from relaybench.sse import SSEDecoder

CHAT = [{"role": "user", "content": "Xin chào, bạn khỏe không?"}]


@pytest.fixture(scope="session")
def mock_url() -> Iterator[str]:
    """One fast mock for tests that need no particular settings or clean stats."""
    args = ["-m", "mock_upstream", "--host", "127.0.0.1", "--port", "0"]
    args += ["--ttft-ms", "20", "--itl-ms", "2", "--output-tokens", "12", "--seed", "7"]
    with ServerProcess("mock_upstream", args) as server:
        yield server.url


@dataclass
class Stream:
    status: int
    headers: httpx.Headers
    sent_ns: int
    events: list[tuple[int, str]] = field(default_factory=list)  # (arrival ns, data)
    raw: bytes = b""
    comments: int = 0

    @property
    def chunks(self) -> list[dict[str, Any]]:
        return [orjson.loads(data) for _, data in self.events if data != "[DONE]"]

    def content_events(self) -> list[tuple[int, dict[str, Any]]]:
        out = []
        for arrived, data in self.events:
            if data == "[DONE]":
                continue
            chunk = orjson.loads(data)
            choices = chunk.get("choices") or []
            if choices:
                text = choices[0].get("delta", {}).get("content") or choices[0].get("text")
                if text:
                    out.append((arrived, chunk))
        return out

    def text(self) -> str:
        parts = []
        for _, chunk in self.content_events():
            choice = chunk["choices"][0]
            parts.append(choice["delta"]["content"] if "delta" in choice else choice["text"])
        return "".join(parts)


ReadStream = Callable[..., Stream]


def _read_stream(
    url: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    path: str = "/v1/chat/completions",
) -> Stream:
    body = {"messages": CHAT, "stream": True} if body is None else body
    decoder = SSEDecoder()
    raw = bytearray()
    with httpx.Client(timeout=15) as client:
        sent = time.time_ns()
        with client.stream("POST", url + path, json=body, headers=headers) as response:
            result = Stream(response.status_code, response.headers, sent)
            for piece in response.iter_raw():
                now = time.time_ns()
                raw += piece
                result.events += [(now, ev.data) for ev in decoder.feed(piece)]
    result.raw = bytes(raw)
    result.comments = decoder.comments
    return result


@pytest.fixture
def read_stream() -> ReadStream:
    """``read_stream(url, body=None, headers=None, path=...)`` -> Stream (arrival-timed events)."""
    return _read_stream


def stats(url: str) -> dict[str, Any]:
    return httpx.get(url + "/mock/stats", timeout=5).json()


@pytest.fixture
def get_stats() -> Callable[[str], dict[str, Any]]:
    return stats
