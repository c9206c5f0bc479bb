"""Errors as values that render themselves in both API shapes (docs/ollama-wire.md §9)."""

from __future__ import annotations

from aiohttp import web

from router.wire import BUSY_MESSAGE, JSON, JSON_UTF8, native_error_body, openai_error_body


class ApiError(Exception):
    """A failure the client sees before the first byte of its response.

    `runner` marks failures that upstream reports from inside the stream
    machinery: on a streamed native request they carry `application/json`
    without charset (1.3), everything else carries the charset.
    """

    def __init__(self, status: int, message: str, *, runner: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.runner = runner

    def native(self, *, streaming: bool = False) -> web.Response:
        content_type = JSON if (self.runner and streaming) else JSON_UTF8
        return web.Response(
            status=self.status,
            body=native_error_body(self.message),
            headers={"Content-Type": content_type},
        )

    def openai(self) -> web.Response:
        return web.Response(
            status=self.status,
            body=openai_error_body(self.message, self.status),
            headers={"Content-Type": JSON},
        )


def busy() -> ApiError:
    return ApiError(503, BUSY_MESSAGE)


class StreamCut(Exception):
    """A generation failed after some tokens were produced (the `cut` fault)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
