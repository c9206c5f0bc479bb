"""Errors the router answers with, each rendered in the API's own shape.

Handlers raise these; the middleware renders them. `/v1/*` gets OpenAI's
envelope, everything else Ollama's `{"error": "..."}` (docs/ollama-wire.md §9).
"""

from __future__ import annotations

from aiohttp import web

from router import wire

OPENAI = "openai"
OLLAMA = "ollama"


def api_of(path: str) -> str:
    return OPENAI if path.startswith("/v1/") else OLLAMA


class RouterError(Exception):
    status = 500
    openai_type: str | None = None
    code: str | None = None
    param: str | None = None

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        if status is not None:
            self.status = status

    def render(self, api: str) -> web.Response:
        headers = {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(self.retry_after)))
        if api == OPENAI:
            body = wire.openai_error_body(self.message, self.status, type_=self.openai_type, param=self.param, code=self.code)
            content_type = wire.JSON
        else:
            body = wire.native_error_body(self.message)
            content_type = wire.JSON_UTF8
        headers["Content-Type"] = content_type
        return web.Response(status=self.status, body=body, headers=headers)


class BadRequest(RouterError):
    status = 400
    openai_type = "invalid_request_error"


class MissingModel(BadRequest):
    param = "model"

    def __init__(self) -> None:
        super().__init__("model is required")


class ModelNotFound(RouterError):
    status = 404
    openai_type = "invalid_request_error"
    code = "model_not_found"
    param = "model"

    def __init__(self, name: str) -> None:
        super().__init__(f"model '{name}' not found")


class BodyTooLarge(RouterError):
    status = 413
    openai_type = "invalid_request_error"


class RequestTimeout(RouterError):
    """The client did not send its request body in time."""

    status = 408
    openai_type = "invalid_request_error"
    code = "request_timeout"


class Unauthorized(RouterError):
    status = 401
    openai_type = "invalid_request_error"
    code = "invalid_api_key"


class Forbidden(RouterError):
    status = 403
    openai_type = "permission_error"


class TooManyRequests(RouterError):
    status = 429
    openai_type = "rate_limit_error"
    code = "rate_limit_exceeded"


class Unavailable(RouterError):
    """Nothing can serve the request now; try again shortly."""

    status = 503
    openai_type = "api_error"
    code = "service_unavailable"


class NotFoundRoute(RouterError):
    status = 404
    openai_type = "invalid_request_error"
    code = "unknown_url"

    def render(self, api: str) -> web.Response:
        if api == OPENAI:
            return super().render(api)
        return web.Response(status=404, body=b"404 page not found", content_type="text/plain")


class MethodNotAllowed(RouterError):
    status = 405
    openai_type = "invalid_request_error"

    def __init__(self, message: str, allow: str) -> None:
        super().__init__(message)
        self.allow = allow

    def render(self, api: str) -> web.Response:
        if api == OPENAI:
            response = super().render(api)
        else:
            response = web.Response(status=405, body=b"405 method not allowed", content_type="text/plain")
        response.headers["Allow"] = self.allow
        return response
