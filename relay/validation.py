"""Request bodies: read with a size cap, parse, and check the fields the relay relies on.

Every refusal is a ``BadRequest`` whose ``param`` names the offending field (``messages[2].role``)
or a ``PayloadTooLarge``. Only the fields the relay reads or forwards are checked; everything
else in an OpenAI request passes through untouched for the upstream to judge.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import Receive, Scope

from relay.errors import BadRequest, PayloadTooLarge
from relaybench import asgi

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body; the shared reader's refusals become the relay's errors."""
    try:
        return await asgi.read_body(scope, receive, limit)
    except asgi.BodyTooLarge as exc:
        raise PayloadTooLarge(str(exc)) from None
    except asgi.BadContentLength as exc:
        raise BadRequest(str(exc), param="Content-Length") from None


def parse_json(body: bytes) -> dict[str, Any]:
    if not body:
        raise BadRequest("request body is empty; expected a JSON object", param="body")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", param="body") from None
    if not isinstance(document, dict):
        raise BadRequest("request body must be a JSON object", param="body")
    return document


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_chat(document: dict[str, Any]) -> None:
    """Check the fields of a chat completions request the relay depends on."""
    messages = document.get("messages")
    if messages is None:
        raise BadRequest("'messages' is required", param="messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array", param="messages")
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise BadRequest(f"'{where}' must be an object", param=where)
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise BadRequest(
                f"'{where}.role' must be one of {', '.join(sorted(ROLES))}", param=f"{where}.role"
            )
        content = message.get("content")
        tool_call = role == "assistant" and message.get("tool_calls") is not None
        if not (isinstance(content, str | list) or (content is None and tool_call)):
            raise BadRequest(
                f"'{where}.content' must be a string or an array of parts",
                param=f"{where}.content",
            )
    model = document.get("model")
    if model is not None and not isinstance(model, str):
        raise BadRequest("'model' must be a string", param="model")
    stream = document.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise BadRequest("'stream' must be a boolean", param="stream")
    options = document.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise BadRequest("'stream_options' must be an object", param="stream_options")
    temperature = document.get("temperature")
    if temperature is not None and not (_is_number(temperature) and 0 <= temperature <= 2):
        raise BadRequest("'temperature' must be a number from 0 to 2", param="temperature")
    for name in ("max_tokens", "max_completion_tokens"):
        value = document.get(name)
        if value is not None and not (
            isinstance(value, int) and not isinstance(value, bool) and value > 0
        ):
            raise BadRequest(f"'{name}' must be a positive integer", param=name)
