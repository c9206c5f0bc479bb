"""Request body limits: size (413) and time (408), read once before the handler.

The body is read here with a deadline (slow clients), and aiohttp keeps it for
the handler's own `request.read()`. Headers are bounded by the server's
keep-alive timeout (see `router.server.runner`). With `log_bodies` the body is
logged (truncated); otherwise no log line ever holds request text.
"""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web

from router.access.auth import Handler, Middleware
from router.server.context import RECORD
from router.server.errors import BodyTooLarge, RequestTimeout

log = structlog.get_logger("router.access")

LOGGED_BODY_BYTES = 4096


def limits_middleware(max_body_bytes: int, body_timeout: float, log_bodies: bool = False) -> Middleware:
    too_large = f"request body too large (limit {max_body_bytes} bytes)"

    @web.middleware
    async def limits(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.body_exists:
            length = request.content_length
            if length is not None and length > max_body_bytes:
                raise BodyTooLarge(too_large)
            try:
                if request.content.is_eof():  # the whole body came with the headers: nothing to wait for
                    body = await request.read()
                else:
                    async with asyncio.timeout(body_timeout):
                        body = await request.read()
            except TimeoutError:
                raise RequestTimeout(f"request body not received within {body_timeout:g}s") from None
            except web.HTTPRequestEntityTooLarge:
                raise BodyTooLarge(too_large) from None
            if log_bodies:
                log.info(
                    "request_body",
                    request_id=request[RECORD].request_id,
                    body=body[:LOGGED_BODY_BYTES].decode("utf-8", "replace"),
                    truncated=len(body) > LOGGED_BODY_BYTES,
                )
        return await handler(request)

    return limits
