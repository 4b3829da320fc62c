"""Sans-I/O parsing of a completion request: body bytes and headers in, a typed request out.

Every problem raises ``BadRequest`` naming the field or header, never anything else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import orjson

from mock_upstream.errors import BadRequest
from mock_upstream.faults import Fault, FaultSyntaxError, parse_fault
from mock_upstream.latency import MAX_OUTPUT_TOKENS

_ROLES = frozenset({"system", "user", "assistant", "tool", "function", "developer"})


@dataclass(frozen=True)
class Overrides:
    """Per-request ``X-Mock-*`` header values (``None``: use the server's setting)."""

    ttft_ms: float | None = None
    itl_ms: float | None = None
    output_tokens: int | None = None
    seed: int | None = None
    fault: Fault | None = None


@dataclass(frozen=True)
class CompletionRequest:
    chat: bool
    model: str | None
    stream: bool
    include_usage: bool
    max_tokens: int | None
    prompt_tokens: int


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
    else:
        chars = _prompt_chars(body.get("prompt"))
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
    )


def _number(
    value: str, header: str, *, integer: bool, minimum: float, maximum: float = math.inf
) -> float:
    try:
        number = int(value) if integer else float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or not minimum <= number <= maximum:
        kind = "an integer" if integer else "a number"
        upper = f" and <= {maximum:g}" if math.isfinite(maximum) else ""
        raise BadRequest(
            f"header {header} must be {kind} >= {minimum:g}{upper}, got {value!r}",
            code="invalid_header",
            param=header,
        )
    return number


def parse_overrides(headers: list[tuple[bytes, bytes]]) -> Overrides:
    """Read the ``X-Mock-*`` headers of an ASGI scope (names arrive lower-cased)."""
    found: dict[str, str] = {}
    for name, value in headers:
        if name.startswith(b"x-mock-"):
            found[name.decode("latin-1")] = value.decode("latin-1").strip()
    if not found:
        return Overrides()
    ttft = found.get("x-mock-ttft-ms")
    itl = found.get("x-mock-itl-ms")
    out = found.get("x-mock-output-tokens")
    seed = found.get("x-mock-seed")
    fault_text = found.get("x-mock-fault")
    fault = None
    if fault_text is not None:
        try:
            fault = parse_fault(fault_text)
        except FaultSyntaxError as exc:
            raise BadRequest(
                f"header X-Mock-Fault: {exc}", code="invalid_header", param="X-Mock-Fault"
            ) from None
    return Overrides(
        ttft_ms=None if ttft is None else _number(ttft, "X-Mock-TTFT-Ms", integer=False, minimum=0),
        itl_ms=None if itl is None else _number(itl, "X-Mock-ITL-Ms", integer=False, minimum=0),
        output_tokens=None
        if out is None
        else int(
            _number(out, "X-Mock-Output-Tokens", integer=True, minimum=1, maximum=MAX_OUTPUT_TOKENS)
        ),
        seed=None if seed is None else int(_number(seed, "X-Mock-Seed", integer=True, minimum=0)),
        fault=fault,
    )
