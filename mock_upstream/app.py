"""The mock's routes, with OpenAI-shaped JSON for every error.

The two completion endpoints are dispatched by a plain ASGI front (``MockApp``) straight to
their raw ASGI handler, so each streamed chunk's ``send`` reaches uvicorn without passing
through Starlette's middleware wrappers; everything else (and every 404/405) is Starlette's.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mock_upstream.completions import Completions
from mock_upstream.config import MockConfig
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


def build_app(config: MockConfig, state: MockState | None = None) -> MockApp:
    state = state or MockState(config)
    chat, legacy = Completions(state, chat=True), Completions(state, chat=False)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def models(request: Request) -> Response:
        model = {"id": config.model, "object": "model", "created": 0, "owned_by": "relaybench"}
        return JSONResponse({"object": "list", "data": [model]})

    async def stats(request: Request) -> Response:
        return JSONResponse(state.snapshot())

    async def reset(request: Request) -> Response:
        state.reset()
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

    routes = [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", legacy, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/mock/stats", stats, methods=["GET"]),
        Route("/mock/reset", reset, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    return MockApp(app, {"/v1/chat/completions": chat, "/v1/completions": legacy})
