"""Errors the router answers with. Handlers and middlewares raise these; the
edge middleware renders them once, in the shape of the API the request used
(`router.http.apis`)."""

from __future__ import annotations


class RouterError(Exception):
    status = 500
    openai_type: str | None = None  # None: derived from the status as Ollama does
    code: str | None = None
    param: str | None = None

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.headers = headers or {}
        if status is not None:
            self.status = status


class BadRequest(RouterError):
    status = 400
    openai_type = "invalid_request_error"


class MissingModel(BadRequest):
    param = "model"

    def __init__(self) -> None:
        super().__init__("model is required")


class AmbiguousField(BadRequest):
    """The body holds a field in two ways a backend could read differently."""

    code = "ambiguous_field"


class AmbiguousModel(AmbiguousField):
    """The body names its model in two ways a backend could read differently."""

    param = "model"
    code = "ambiguous_model_field"


class ModelNameTooLong(BadRequest):
    param = "model"
    code = "invalid_model_name"


class ContextLengthExceeded(BadRequest):
    param = "messages"
    code = "context_length_exceeded"


class ModelNotFound(RouterError):
    status = 404
    openai_type = "invalid_request_error"
    code = "model_not_found"
    param = "model"

    def __init__(self, name: str) -> None:
        super().__init__(f"model '{name}' not found")


class CloudModelRefused(ModelNotFound):
    """A cloud model's name (Ollama would send it to ollama.com) that the catalog does not list."""

    def __init__(self, name: str) -> None:
        RouterError.__init__(
            self, f"model '{name}' not found: cloud models are served only when the router's catalog lists them"
        )


class NotImplementedByFleet(RouterError):
    """No container of the model runs an Ollama new enough for this endpoint."""

    status = 501
    openai_type = "api_error"
    code = "not_implemented"


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


class OriginNotAllowed(Forbidden):
    """A browser page from an origin the router does not trust (or a DNS-rebound Host)."""

    code = "origin_not_allowed"


class TooManyRequests(RouterError):
    """The caller's own limit: its key's rate or its concurrent requests."""

    status = 429
    openai_type = "rate_limit_error"
    code = "rate_limit_exceeded"


class FleetAtCapacity(TooManyRequests):
    """Every container that could serve is full and so is its queue: load, not the caller's limit."""

    code = "fleet_at_capacity"


class Unavailable(RouterError):
    """Nothing can serve the request now; try again shortly."""

    status = 503
    openai_type = "api_error"
    code = "service_unavailable"


class NotFoundRoute(RouterError):
    status = 404
    openai_type = "invalid_request_error"
    code = "unknown_url"


class MethodNotAllowed(RouterError):
    status = 405
    openai_type = "invalid_request_error"

    def __init__(self, message: str, allow: str) -> None:
        super().__init__(message, headers={"Allow": allow})
