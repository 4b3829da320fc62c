"""Building one request's record from what arrived: sans-I/O, so it is tested without a network.

The user (``loadtests.user``) does the I/O and calls, in order: ``headers`` once (if a response
came), ``body`` for every read of the body with its arrival times, then ``finish`` (the body
ended) or ``fail`` (a transport error). ``record()`` is then one line of
``records/<target>.<worker>.jsonl``: the fields of ``relaybench.records.Record``
(``docs/run-folder.md`` says what they mean).

Streams are parsed with ``relaybench.sse.SSEDecoder`` and nothing else. A content chunk is one
whose ``choices[0].delta.content`` is a non-empty string (the role-only first chunk is not one).
Durations come from ``perf_counter_ns``; lags compare the wall clock (``time_ns``) at arrival with
the mock's ``x_mock_emitted_ns`` stamp, because the stamp is wall-clock time on the same host.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from relaybench import credentials, records
from relaybench.sse import SSEDecoder

DONE = "[DONE]"
MAX_ERROR_BODY = 4096  # bytes of an error body kept to explain it
MAX_DETAIL = 200


def _ms(ns: int) -> float:
    return round(ns / 1e6, 4)


class RecordBuilder:
    """Accumulates one request's timings and outcome.

    ``fields`` are the record's known-at-send fields (``target``, ``worker``, ``seq``,
    ``stream``, ``start_ns`` are required; any other field of ``relaybench.records.Record``
    may be given, e.g. ``users`` or ``max_tokens``); the builder fills in the rest.
    ``secrets`` (the API key) are removed from every text kept about the answer
    (``error_detail``): a target may quote the key it was sent.
    """

    def __init__(self, *, start_pc: int, secrets: Sequence[str] = (), **fields: Any) -> None:
        self.rec = records.new_record(**fields)
        self.secrets = secrets
        self.stream: bool = self.rec["stream"]
        self.start_pc = start_pc
        self._decoder = SSEDecoder() if self.stream else None
        self._chunks: list[float] = self.rec["chunks_ms"]
        self._lags: list[float] = []
        self._unstamped = 0
        self._done = False
        self._body = bytearray()
        self.http_error = False
        self.text: list[str] | None = None  # set to [] to keep the answer's content (chat)

    # -- events from the I/O side -------------------------------------------------------------

    def headers(self, status: int, pc_ns: int) -> None:
        self.rec["status"] = status
        self.rec["headers_ms"] = _ms(pc_ns - self.start_pc)
        error = records.from_status(status)
        if error is not None:
            self.http_error = True
            self._error(error, f"HTTP {status}")

    def body(self, data: bytes, pc_ns: int, wall_ns: int) -> None:
        if self.http_error or not self.stream:
            if len(self._body) < MAX_ERROR_BODY or not self.http_error:
                self._body += data
            return
        assert self._decoder is not None
        for event in self._decoder.feed(data):
            self._event(event.data, pc_ns, wall_ns)

    def finish(self, pc_ns: int, wall_ns: int) -> None:
        """The body ended (the server said so, or closed the connection)."""
        self.rec["e2e_ms"] = _ms(pc_ns - self.start_pc)
        if self.http_error:
            self._explain_error_body()
        elif self.stream:
            if not self._done:
                self._error(records.TRUNCATED, "stream ended without [DONE]")
        else:
            self._whole_body(pc_ns, wall_ns)
        self.rec["ok"] = self.rec["error"] is None

    def fail(self, error: str, detail: str, pc_ns: int) -> None:
        """A transport error ended the request."""
        self.rec["e2e_ms"] = _ms(pc_ns - self.start_pc)
        self._error(error, detail)
        self.rec["ok"] = False

    def record(self) -> dict[str, Any]:
        rec = self.rec
        n = rec["content_chunks"]
        if self._lags and not self._unstamped:
            rec["lags_ms"] = self._lags
        usage = rec["usage_tokens"]
        rec["output_tokens"] = usage if usage is not None else n
        return rec

    # -- internals ----------------------------------------------------------------------------

    def _error(self, error: str, detail: str) -> None:
        if self.rec["error"] is None:  # the first thing that went wrong explains the rest
            self.rec["error"] = error
            self.rec["error_detail"] = self._detail(detail)

    def _detail(self, text: str) -> str:
        """``error_detail``: without the secrets (hidden before the cut: no part of one is left)."""
        return self._hide(text)[:MAX_DETAIL]

    def _hide(self, text: str) -> str:
        return credentials.redacted_text(text, self.secrets)

    def _content(self, pc_ns: int, wall_ns: int, stamp: object) -> None:
        at = _ms(pc_ns - self.start_pc)
        if not self._chunks:
            self.rec["ttft_ms"] = at
        self._chunks.append(at)
        self.rec["content_chunks"] += 1
        if type(stamp) is int:
            self._lags.append(round((wall_ns - stamp) / 1e6, 4))
        else:
            self._unstamped += 1

    def _event(self, data: str, pc_ns: int, wall_ns: int) -> None:
        if data == DONE:
            self._done = True
            return
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._error(records.MALFORMED, f"data line is not JSON: {self._hide(data)[:80]!r}")
            return
        if type(obj) is not dict:
            self._error(
                records.MALFORMED, f"data line is not a JSON object: {self._hide(data)[:80]!r}"
            )
            return
        if "error" in obj:
            err = obj["error"]
            msg = err.get("message") if isinstance(err, dict) else err
            self._error(records.STREAM_ERROR, str(msg))
            return
        choices = obj.get("choices")
        if type(choices) is list and choices:
            delta = choices[0].get("delta") if type(choices[0]) is dict else None
            if type(delta) is dict and delta.get("content"):
                self._content(pc_ns, wall_ns, obj.get("x_mock_emitted_ns"))
                if self.text is not None:
                    self.text.append(str(delta["content"]))
        usage = obj.get("usage")
        if type(usage) is dict and type(usage.get("completion_tokens")) is int:
            self.rec["usage_tokens"] = usage["completion_tokens"]

    def _whole_body(self, pc_ns: int, wall_ns: int) -> None:
        """A non-streaming answer: the whole body is the first (and only) token event."""
        try:
            obj = orjson.loads(self._body)
            content = obj["choices"][0]["message"].get("content")
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
            body = self._hide(self._body.decode("utf-8", "replace"))
            self._error(records.MALFORMED, f"body is not a chat completion: {body[:80]!r}")
            return
        if "error" in obj:
            self._error(records.STREAM_ERROR, str(obj["error"]))
        if content:
            self._content(pc_ns, wall_ns, obj.get("x_mock_emitted_ns"))
            if self.text is not None:
                self.text.append(str(content))
        usage = obj.get("usage")
        if isinstance(usage, dict) and type(usage.get("completion_tokens")) is int:
            self.rec["usage_tokens"] = usage["completion_tokens"]

    def _explain_error_body(self) -> None:
        try:
            err = orjson.loads(self._body)["error"]
            msg = err.get("message") if isinstance(err, dict) else err
        except (orjson.JSONDecodeError, KeyError, TypeError):
            msg = self._body.decode("utf-8", "replace")
        self.rec["error_detail"] = self._detail(f"HTTP {self.rec['status']}: {msg}")
