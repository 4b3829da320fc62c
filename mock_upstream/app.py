"""The mock's routes, with OpenAI-shaped JSON for every error.

The two completion endpoints are dispatched by a plain ASGI front (``MockApp``) straight to
their raw ASGI handler, so each streamed chunk's ``send`` reaches uvicorn without passing
through Starlette's middleware wrappers; everything else (and every 404/405) is Starlette's.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mock_upstream.completions import Completions
from mock_upstream.config import MockConfig
from mock_upstream.errors import ApiError, BadRequest
from mock_upstream.peers import PeerError, merge_requests, merge_stats
from mock_upstream.state import MockState


class MockApp:
    """Plain ASGI: POSTs to the completion paths go straight to their handler."""

    def __init__(self, app: Starlette, fast: dict[str, Completions]) -> None:
        self.app = app
        self.fast = fast

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self.fast.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _query_error(message: str) -> BadRequest:
    return BadRequest(f"GET /mock/requests: {message}", code="invalid_query")


def build_app(config: MockConfig, state: MockState | None = None) -> MockApp:
    state = state or MockState(config)
    chat, legacy = Completions(state, chat=True), Completions(state, chat=False)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def models(request: Request) -> Response:
        model = {"id": config.model, "object": "model", "created": 0, "owned_by": "relaybench"}
        return JSONResponse({"object": "list", "data": [model]})

    async def everyone(op: dict[str, Any]) -> list[dict[str, Any]]:
        """Every worker's answer to ``op`` (just this one's without ``--workers``)."""
        own = state.answer(op)
        if state.peers is None:
            return [own]
        try:
            return await state.peers.ask_all(op, own)
        except PeerError as exc:
            raise ApiError(503, str(exc), type_="server_error", code="worker_unavailable") from None

    async def stats(request: Request) -> Response:
        if state.peers is None:
            return JSONResponse(state.snapshot())
        return JSONResponse(merge_stats(await everyone({"op": "stats"})))

    async def requests(request: Request) -> Response:
        query = request.query_params
        unknown = set(query) - {"id", "since"}
        if unknown:
            raise _query_error(f"unknown query parameter {sorted(unknown)[0]!r}; use id, since")
        since_text = query.get("since", "0")
        if not since_text.isascii() or not since_text.isdigit():
            raise _query_error(f"'since' must be a non-negative integer, got {since_text!r}")
        op = {"op": "requests", "id": query.get("id"), "since": int(since_text)}
        entries = merge_requests(await everyone(op))
        return Response(orjson.dumps({"requests": entries}), media_type="application/json")

    async def reset(request: Request) -> Response:
        await everyone({"op": "reset"})
        if state.peers is not None:
            state.peers.counter.reset()
        return JSONResponse({"reset": True})

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        body = {
            "error": {
                "message": f"{exc.detail}: {request.method} {request.url.path}",
                "type": "invalid_request_error",
                "param": None,
                "code": code,
            }
        }
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return Response(exc.body(), status_code=exc.status, media_type="application/json")

    routes = [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", legacy, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/mock/stats", stats, methods=["GET"]),
        Route("/mock/requests", requests, methods=["GET"]),
        Route("/mock/reset", reset, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, ApiError: api_error},
    )
    return MockApp(app, {"/v1/chat/completions": chat, "/v1/completions": legacy})
