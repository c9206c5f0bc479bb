"""Request body limits: size (413) and time (408).

Handlers read bodies through `Services.read_body`, which `install` sets to a
`BodyReader`: one place, with a deadline against slow clients. Headers are bounded by the server's
keep-alive timeout (see `router.server.runner`). With `log_bodies` the body is
logged (truncated); otherwise no log line ever holds request text.
"""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web

from router.server.context import RECORD
from router.server.errors import BodyTooLarge, RequestTimeout

log = structlog.get_logger("router.access")

LOGGED_BODY_BYTES = 4096


class BodyReader:
    """Reads a request's body for its handler, bounded in size and time."""

    __slots__ = ("body_timeout", "log_bodies", "max_body_bytes", "too_large")

    def __init__(self, max_body_bytes: int, body_timeout: float, log_bodies: bool = False) -> None:
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.log_bodies = log_bodies
        self.too_large = f"request body too large (limit {max_body_bytes} bytes)"

    async def __call__(self, request: web.Request) -> bytes:
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            raise BodyTooLarge(self.too_large)
        try:
            if request.content.is_eof():  # the whole body came with the headers: nothing to wait for
                body = await request.read()
            else:
                async with asyncio.timeout(self.body_timeout):
                    body = await request.read()
        except TimeoutError:
            raise RequestTimeout(f"request body not received within {self.body_timeout:g}s") from None
        except web.HTTPRequestEntityTooLarge:
            raise BodyTooLarge(self.too_large) from None
        if self.log_bodies:
            log.info(
                "request_body",
                request_id=request[RECORD].request_id,
                body=body[:LOGGED_BODY_BYTES].decode("utf-8", "replace"),
                truncated=len(body) > LOGGED_BODY_BYTES,
            )
        return body
