"""Sans-I/O parsing of a completion request: body bytes and headers in, a typed request out.

Every problem raises ``BadRequest`` naming the field, header or tag key, never anything else.

Directives (``Overrides``) come from the ``X-Mock-*`` headers and, for relays that drop custom
headers, from a tag in the last user message (or the prompt of a legacy completion)::

    [[mock fault=stall-after:3 ttft-ms=50 itl-ms=5 output-tokens=20 seed=7 id=case-12]]

Each key means what its header means (``fault`` = ``X-Mock-Fault``, ``ttft-ms`` =
``X-Mock-TTFT-Ms``, ``itl-ms``, ``output-tokens``, ``seed``) and is checked by the same code;
``id`` names the request in ``/mock/requests``. A header wins over the tag for one directive.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import orjson

from mock_upstream.errors import BadRequest
from mock_upstream.faults import Fault, FaultSyntaxError, parse_fault
from mock_upstream.latency import MAX_OUTPUT_TOKENS

_ROLES = frozenset({"system", "user", "assistant", "tool", "function", "developer"})
_TAG = re.compile(r"\[\[mock(\s[^\]]*)?\]\]")
_TAG_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# tag key -> the header of the same directive
TAG_KEYS = {
    "fault": "x-mock-fault",
    "ttft-ms": "x-mock-ttft-ms",
    "itl-ms": "x-mock-itl-ms",
    "output-tokens": "x-mock-output-tokens",
    "seed": "x-mock-seed",
}
_HEADER_NAMES = {
    "x-mock-fault": "X-Mock-Fault",
    "x-mock-ttft-ms": "X-Mock-TTFT-Ms",
    "x-mock-itl-ms": "X-Mock-ITL-Ms",
    "x-mock-output-tokens": "X-Mock-Output-Tokens",
    "x-mock-seed": "X-Mock-Seed",
}


@dataclass(frozen=True)
class Overrides:
    """Per-request ``X-Mock-*`` header values (``None``: use the server's setting)."""

    ttft_ms: float | None = None
    itl_ms: float | None = None
    output_tokens: int | None = None
    seed: int | None = None
    fault: Fault | None = None
    tag_id: str | None = None  # the tag's ``id=``: the request's name in /mock/requests


@dataclass(frozen=True)
class CompletionRequest:
    chat: bool
    model: str | None
    stream: bool
    include_usage: bool
    max_tokens: int | None
    prompt_tokens: int
    tag: dict[str, str] | None = None  # KEY=VALUE pairs of the ``[[mock …]]`` tag(s), unchecked


def _estimate_tokens(chars: int) -> int:
    return max(1, math.ceil(chars / 4))


def _message_chars(messages: object) -> int:
    if not isinstance(messages, list):
        raise BadRequest(
            "'messages' must be an array of message objects", code="invalid_type", param="messages"
        )
    if not messages:
        raise BadRequest("'messages' must not be empty", code="empty_array", param="messages")
    chars = 0
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise BadRequest(f"'{where}' must be an object", code="invalid_type", param=where)
        role = msg.get("role")
        if not isinstance(role, str):
            raise BadRequest(
                f"'{where}.role' is required and must be a string",
                code="invalid_type",
                param=f"{where}.role",
            )
        if role not in _ROLES:
            raise BadRequest(
                f"'{where}.role' must be one of {sorted(_ROLES)}, got {role!r}",
                param=f"{where}.role",
            )
        content = msg.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    chars += len(part["text"])
                elif not isinstance(part, dict):
                    raise BadRequest(
                        f"'{where}.content' parts must be objects",
                        code="invalid_type",
                        param=f"{where}.content",
                    )
        elif content is not None or role not in ("assistant", "tool", "function"):
            raise BadRequest(
                f"'{where}.content' must be a string or an array of content parts",
                code="invalid_type",
                param=f"{where}.content",
            )
    return chars


def _texts(content: object) -> list[str]:
    """The text of a message's content: the string, or the text parts of a list."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        ]
    return []


def _last_user_texts(messages: list[dict[str, object]]) -> list[str]:
    for msg in reversed(messages):
        if msg.get("role") == "user":
            return _texts(msg.get("content"))
    return []


def _prompt_texts(prompt: object) -> list[str]:
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], str):
        return [prompt[-1]]
    return []


def read_tag(texts: list[str]) -> dict[str, str] | None:
    """The ``KEY=VALUE`` pairs of every ``[[mock …]]`` tag in ``texts`` (None: no tag).

    Only the tag's syntax is checked here (pairs, known keys, each key once); the values are
    checked with the headers' code by ``parse_overrides``.
    """
    pairs: dict[str, str] | None = None
    for text in texts:
        if "[[mock" not in text:
            continue
        for match in _TAG.finditer(text):
            pairs = {} if pairs is None else pairs
            for item in (match.group(1) or "").split():
                key, sep, value = item.partition("=")
                key = key.lower()
                if not sep or not key:
                    raise _tag_error(f"{item!r} is not KEY=VALUE", "[[mock]]")
                if key not in TAG_KEYS and key != "id":
                    valid = ", ".join([*TAG_KEYS, "id"])
                    raise _tag_error(f"unknown key {key!r}; valid keys: {valid}", f"[[mock {key}]]")
                if key in pairs:
                    raise _tag_error(f"key {key} is given twice", f"[[mock {key}]]")
                pairs[key] = value
    return pairs


def _tag_error(message: str, param: str) -> BadRequest:
    return BadRequest(f"[[mock]] tag: {message}", code="invalid_tag", param=param)


def _prompt_chars(prompt: object) -> int:
    if isinstance(prompt, str):
        return len(prompt)
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return sum(len(p) for p in prompt)
        if all(isinstance(p, int) and not isinstance(p, bool) for p in prompt):
            return 4 * len(prompt)  # token ids
    raise BadRequest(
        "'prompt' is required: a string, an array of strings or an array of token ids",
        code="invalid_type" if prompt is not None else "missing_required_parameter",
        param="prompt",
    )


def _optional_int(body: dict[str, object], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequest(f"'{name}' must be an integer >= 1", code="invalid_type", param=name)
    return value


def parse_body(raw: bytes, *, chat: bool) -> CompletionRequest:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object", code="invalid_json")
    if chat:
        if "messages" not in body:
            raise BadRequest(
                "missing required parameter: 'messages'",
                code="missing_required_parameter",
                param="messages",
            )
        chars = _message_chars(body["messages"])
        tag = read_tag(_last_user_texts(body["messages"]))
    else:
        chars = _prompt_chars(body.get("prompt"))
        tag = read_tag(_prompt_texts(body.get("prompt")))
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise BadRequest("'model' must be a non-empty string", code="invalid_type", param="model")
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise BadRequest("'stream' must be a boolean", code="invalid_type", param="stream")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not isinstance(options, dict):
            raise BadRequest(
                "'stream_options' must be an object", code="invalid_type", param="stream_options"
            )
        include_usage = options.get("include_usage", False)
        if not isinstance(include_usage, bool):
            raise BadRequest(
                "'stream_options.include_usage' must be a boolean",
                code="invalid_type",
                param="stream_options.include_usage",
            )
        if not stream:
            raise BadRequest(
                "'stream_options' is only allowed when 'stream' is true",
                param="stream_options",
            )
    max_tokens = _optional_int(body, "max_completion_tokens")
    if max_tokens is None:
        max_tokens = _optional_int(body, "max_tokens")
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise BadRequest(f"'{name}' must be a number", code="invalid_type", param=name)
    n = body.get("n")
    if n is not None and n != 1:
        raise BadRequest("the mock supports only 'n' = 1", param="n")
    return CompletionRequest(
        chat=chat,
        model=model,
        stream=bool(stream),
        include_usage=include_usage,
        max_tokens=max_tokens,
        prompt_tokens=_estimate_tokens(chars),
        tag=tag,
    )


@dataclass(frozen=True)
class _Source:
    """Where one directive's value came from: a header or a tag key (for the error)."""

    name: str  # "X-Mock-TTFT-Ms" or "ttft-ms"
    tag: bool

    @property
    def what(self) -> str:
        return f"[[mock]] tag key {self.name}" if self.tag else f"header {self.name}"

    def error(self, message: str) -> BadRequest:
        if self.tag:
            return BadRequest(message, code="invalid_tag", param=f"[[mock {self.name}]]")
        return BadRequest(message, code="invalid_header", param=self.name)


def _number(
    value: str, source: _Source, *, integer: bool, minimum: float, maximum: float = math.inf
) -> float:
    try:
        number = int(value) if integer else float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or not minimum <= number <= maximum:
        kind = "an integer" if integer else "a number"
        upper = f" and <= {maximum:g}" if math.isfinite(maximum) else ""
        raise source.error(f"{source.what} must be {kind} >= {minimum:g}{upper}, got {value!r}")
    return number


def parse_overrides(
    headers: list[tuple[bytes, bytes]], tag: dict[str, str] | None = None
) -> Overrides:
    """The directives of the ``X-Mock-*`` headers (names arrive lower-cased) and of the tag.

    A header wins over the tag key of the same directive; both are checked by the same code.
    """
    found: dict[str, tuple[str, _Source]] = {}
    if tag:
        for key, value in tag.items():
            if key in TAG_KEYS:
                found[TAG_KEYS[key]] = (value.strip(), _Source(key, tag=True))
    for name, value in headers:
        if name.startswith(b"x-mock-"):
            header = name.decode("latin-1")
            shown = _HEADER_NAMES.get(header, header)
            found[header] = (value.decode("latin-1").strip(), _Source(shown, tag=False))
    tag_id = None if tag is None else tag.get("id")
    if tag_id is not None and not _TAG_ID.fullmatch(tag_id):
        raise _tag_error(
            f"id must be 1-64 letters, digits, '-', '_' or '.', got {tag_id!r}", "[[mock id]]"
        )
    if not found:
        return Overrides(tag_id=tag_id)
    fault = None
    if "x-mock-fault" in found:
        text, source = found["x-mock-fault"]
        try:
            fault = parse_fault(text)
        except FaultSyntaxError as exc:
            raise source.error(f"{source.what}: {exc}") from None

    def number(header: str, **kw: float | bool) -> float | None:
        if header not in found:
            return None
        value, source = found[header]
        return _number(value, source, **kw)  # type: ignore[arg-type]

    output_tokens = number(
        "x-mock-output-tokens", integer=True, minimum=1, maximum=MAX_OUTPUT_TOKENS
    )
    seed = number("x-mock-seed", integer=True, minimum=0)
    return Overrides(
        ttft_ms=number("x-mock-ttft-ms", integer=False, minimum=0),
        itl_ms=number("x-mock-itl-ms", integer=False, minimum=0),
        output_tokens=None if output_tokens is None else int(output_tokens),
        seed=None if seed is None else int(seed),
        fault=fault,
        tag_id=tag_id,
    )
