"""The mock's routes (Starlette), with OpenAI-shaped JSON for every error."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mock_upstream.completions import Completions
from mock_upstream.config import MockConfig
from mock_upstream.state import MockState


def build_app(config: MockConfig, state: MockState | None = None) -> Starlette:
    state = state or MockState(config)

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
        Route("/v1/chat/completions", Completions(state, chat=True), methods=["POST"]),
        Route("/v1/completions", Completions(state, chat=False), methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/mock/stats", stats, methods=["GET"]),
        Route("/mock/reset", reset, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    app.state.mock = state
    return app
