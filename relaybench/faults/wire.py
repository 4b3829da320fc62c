"""A scripted upstream for the wire-format scenarios: exact bytes, exact write boundaries.

The mock cannot send a 1 MiB event (its output cap is 100,000 tokens, ~600 KiB) nor split a
character across two writes, so these four streams come from this small asyncio server, run
inside the harness when it starts the relays itself. A request picks its script with
``[[wire NAME]]`` in its last user message (relays forward messages unchanged):

    big       one content event of just over 1 MiB of mixed 1- to 4-byte UTF-8
    crlf      every line ends with CRLF
    comments  ``:`` comment lines before, between and after the events
    split     multi-byte characters and a ``data:`` line cut across writes 40 ms apart
    429       HTTP 429 with an OpenAI error and NO Retry-After (the mock always sends one)

Each is a complete, valid stream ending with ``[DONE]``; ``script(name)`` gives its writes, so a
scenario compares what its client received with exactly what was sent. ``arrivals`` keeps the
``perf_counter`` time of every request per script: how often, and how fast, a relay retried.
"""

from __future__ import annotations

import asyncio
import collections
import re
import socket
import time
from collections.abc import Iterator

import orjson

SCRIPTS = ("big", "crlf", "comments", "split")
PAUSE_S = 0.04  # between the writes of ``split``: each part arrives in a read of its own
_PICK = re.compile(rb"\[\[wire (\w+)\]\]")
_TEXT = " xin chào 你好世界 🚀 👩\u200d💻 tiếng Việt データ"  # 1- to 4-byte characters, and a ZWJ


def _chunk(content: str | None, *, role: bool = False, finish: str | None = None) -> dict:
    delta: dict = {}
    if role:
        delta["role"] = "assistant"
    if content is not None:
        delta["content"] = content
    return {
        "id": "chatcmpl-wire",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "relaybench-wire",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


_USAGE = {
    "id": "chatcmpl-wire",
    "object": "chat.completion.chunk",
    "created": 0,
    "model": "relaybench-wire",
    "choices": [],
    "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4},
}


def _event(obj: dict, eol: bytes = b"\n") -> bytes:
    return b"data: " + orjson.dumps(obj) + eol + eol


def script(name: str) -> list[bytes]:
    """The writes of one script, in order (their concatenation is the response body)."""
    tail = [_event(_chunk(None, finish="stop")), _event(_USAGE), b"data: [DONE]\n\n"]
    if name == "big":
        big = _TEXT * (1024 * 1024 // len(_TEXT.encode()) + 1)
        return [_event(_chunk("", role=True)), _event(_chunk(big)), *tail]
    if name == "crlf":
        crlf = [_event(_chunk("", role=True), b"\r\n")]
        crlf += [_event(_chunk(word), b"\r\n") for word in _TEXT.split(" ") if word]
        crlf += [_event(_chunk(None, finish="stop"), b"\r\n"), _event(_USAGE, b"\r\n")]
        return [*crlf, b"data: [DONE]\r\n\r\n"]
    if name == "comments":
        out = [b": hello\n\n", _event(_chunk("", role=True))]
        for word in _TEXT.split(" "):
            if word:
                out += [b": keep-alive\n\n", _event(_chunk(word))]
        return [*out, b":\n\n", *tail]
    if name == "split":
        whole = _event(_chunk("", role=True)) + _event(_chunk(_TEXT)) + _event(_chunk("🇻🇳 ✅"))
        return [*_cut_inside_characters(whole), *tail]
    raise ValueError(f"unknown wire script {name!r}; choose from {', '.join(SCRIPTS)}")


def _cut_inside_characters(data: bytes) -> Iterator[bytes]:
    """``data`` in pieces, each cut in the middle of a multi-byte UTF-8 character."""
    start = 0
    for i in range(1, len(data)):
        if 0x80 <= data[i] < 0xC0 and data[i - 1] >= 0xC0:  # right after a lead byte
            yield data[start:i]
            start = i
    yield data[start:]


_RATE_LIMITED = b'{"error":{"message":"rate limited","type":"rate_limit_error","code":null}}'


class WireUpstream:
    """The scripted upstream. The socket is bound at once (127.0.0.1, an OS-chosen port), so
    ``url`` is known before the relay in front of it starts; ``start`` serves it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server: asyncio.Server | None = None
        self.arrivals: dict[str, list[float]] = collections.defaultdict(list)
        self._open: set[asyncio.StreamWriter] = set()  # Python 3.11 has no close_clients()

    async def start(self) -> WireUpstream:
        self.server = await asyncio.start_server(self._serve, sock=self.sock)
        return self

    async def stop(self) -> None:
        if self.server is None:
            self.sock.close()
        else:
            self.server.close()
            for writer in list(self._open):
                writer.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
            body = await reader.readexactly(int(length.group(1))) if length else b""
            pick = _PICK.search(body)
            name = pick.group(1).decode() if pick else ""
            self.arrivals[name].append(time.perf_counter())
            if name not in SCRIPTS:
                status, message = b"400 Bad Request", b'{"error":{"message":"no [[wire NAME]]"}}'
                if name == "429":
                    status, message = b"429 Too Many Requests", _RATE_LIMITED
                writer.write(
                    b"HTTP/1.1 %s\r\ncontent-type: application/json\r\nconnection: close\r\n"
                    b"content-length: %d\r\n\r\n%s" % (status, len(message), message)
                )
                await writer.drain()
                return
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
            )
            for part in script(pick.group(1).decode()):
                writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                await writer.drain()
                if pick.group(1) == b"split":
                    await asyncio.sleep(PAUSE_S)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._open.discard(writer)
            writer.close()
