"""Deterministic mixed-script text and the pre-encoded SSE chunk templates.

The vocabulary mixes ASCII with multi-byte UTF-8 (Vietnamese diacritics: 2-3 bytes, CJK: 3
bytes, emoji: 4 bytes and ZWJ/skin-tone sequences), so byte-splitting bugs in clients and
relays show up. Each token's JSON string body is encoded once at import; a chunk is then a
join of constant byte strings, the token bytes and the emission stamp: no JSON encoder runs on
the hot path.
"""

from __future__ import annotations

import orjson

VOCAB: tuple[str, ...] = (
    " the",
    " relay",
    " stream",
    " token",
    " latency",
    " Hello",
    ",",
    ".",
    " and",
    " of",
    " fast",
    " data",
    " user",
    " server",
    " chunk",
    " test",
    "\n",
    " a",
    " is",
    ' "quoted"',
    " Việt",
    " Nam",
    " tiếng",
    " người",
    " được",
    " những",
    " đường",
    " phở",
    " cảm ơn",
    " xin chào",
    " 你好",
    "世界",
    "流",
    "式",
    "传输",
    " 東京",
    "データ",
    " 한국어",
    " 🚀",
    " 👍🏽",
    " 😀",
    " 🇻🇳",
    " 👩‍💻",
    " ✅",
)


def _inner(text: str) -> bytes:
    return orjson.dumps(text)[1:-1]  # the JSON string without its quotes


VOCAB_JSON: tuple[bytes, ...] = tuple(_inner(t) for t in VOCAB)


def text_of(tokens: tuple[int, ...] | list[int]) -> str:
    return "".join(VOCAB[i] for i in tokens)


def chunk_bodies(tokens: tuple[int, ...], per_chunk: int) -> list[bytes]:
    """Group tokens into chunk contents (JSON string bodies), ``per_chunk`` tokens each."""
    js = VOCAB_JSON
    if per_chunk <= 1:
        return [js[i] for i in tokens]
    return [
        b"".join(js[i] for i in tokens[k : k + per_chunk]) for k in range(0, len(tokens), per_chunk)
    ]


def _dumps(obj: object) -> bytes:
    return orjson.dumps(obj)


class ChunkTemplates:
    """The byte strings of one response's chunks, built once per request.

    ``content(body, ns)`` is the hot path: five byte strings joined. ``chat`` selects the
    ``chat.completion.chunk`` shape, else the legacy ``text_completion`` shape.
    """

    __slots__ = (
        "_base",
        "_chat",
        "_eol",
        "_head",
        "_mid",
        "_tail",
        "content_tail",
        "done",
        "keepalive",
    )

    def __init__(self, *, chat: bool, id_: str, created: int, model: str, crlf: bool) -> None:
        eol = b"\r\n" if crlf else b"\n"
        self._eol = eol
        self._chat = chat
        obj = "chat.completion.chunk" if chat else "text_completion"
        self._base = (
            b'data: {"id":'
            + _dumps(id_)
            + b',"object":"'
            + obj.encode()
            + b'","created":'
            + str(created).encode()
            + b',"model":'
            + _dumps(model)
            + (b',"system_fingerprint":"fp_mock"' if chat else b"")
            + b',"choices":'
        )
        if chat:
            self._head = self._base + b'[{"index":0,"delta":{"content":"'
            self._mid = b'"},"logprobs":null,"finish_reason":null}],"x_mock_emitted_ns":'
        else:
            self._head = self._base + b'[{"text":"'
            self._mid = b'","index":0,"logprobs":null,"finish_reason":null}],"x_mock_emitted_ns":'
        self._tail = self.content_tail = b"}" + eol + eol
        self.done = b"data: [DONE]" + eol + eol
        self.keepalive = b": keep-alive" + eol + eol

    def content(self, body: bytes, ns: int) -> bytes:
        return b"".join((self._head, body, self._mid, b"%d" % ns, self._tail))

    def content_prefix(self, body: bytes) -> bytes:
        """A content chunk's bytes before its stamp (``content_tail`` follows the stamp)."""
        return self._head + body + self._mid

    def role(self, ns: int) -> bytes:
        """The first chat chunk: ``delta.role`` and an empty content, as OpenAI sends it."""
        return b"".join(
            (
                self._base,
                b'[{"index":0,"delta":{"role":"assistant","content":""},'
                b'"logprobs":null,"finish_reason":null}],"x_mock_emitted_ns":',
                b"%d" % ns,
                self._tail,
            )
        )

    def final(self, finish_reason: str, ns: int) -> bytes:
        if self._chat:
            choice = b'[{"index":0,"delta":{},"logprobs":null,"finish_reason":"'
        else:
            choice = b'[{"text":"","index":0,"logprobs":null,"finish_reason":"'
        return b"".join(
            (
                self._base,
                choice,
                finish_reason.encode(),
                b'"}],"x_mock_emitted_ns":',
                b"%d" % ns,
                self._tail,
            )
        )

    def usage(self, usage: dict[str, int], ns: int) -> bytes:
        return b"".join(
            (
                self._base,
                b'[],"usage":',
                _dumps(usage),
                b',"x_mock_emitted_ns":',
                b"%d" % ns,
                self._tail,
            )
        )

    def malformed(self) -> bytes:
        """One data line that is not valid JSON (the ``malformed-after`` fault)."""
        return b'data: {"id":"malformed","choices":[{"delta":' + self._eol + self._eol
