"""The auth middleware: who is calling, may they use this path, are they within their rate.

Probes (`/healthz`, `/readyz`) are always open; `/metrics` and `/router/status`
need an admin key; every other path needs a key. Without a keys file the router
is open and says so at start.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from router.access.keys import KeyStore, presented_key
from router.server.context import MODEL_ALLOWED, RECORD
from router.server.errors import Forbidden, TooManyRequests, Unauthorized
from router.wire import is_loopback

log = structlog.get_logger("router.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
ADMIN_PATHS = frozenset({"/metrics", "/router/status"})


def auth_middleware(store: KeyStore) -> Middleware:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in OPEN_PATHS:
            return await handler(request)
        presented = presented_key(request.headers)
        if presented is None:
            raise Unauthorized("missing API key: send 'Authorization: Bearer KEY' or 'x-api-key: KEY'")
        key = store.find(presented)
        if key is None:
            raise Unauthorized("invalid API key")
        request[RECORD].key_name = key.name
        if path in ADMIN_PATHS:
            if not key.admin:
                raise Forbidden(f"{path} needs an admin key")
        elif key.bucket is not None:
            wait = key.bucket.take()
            if wait:
                raise TooManyRequests(f"rate limit of key '{key.name}' exceeded; retry in {wait:.1f}s", retry_after=math.ceil(wait))
        if key.model_allowed is not None:
            request[MODEL_ALLOWED] = key.model_allowed
        return await handler(request)

    return auth


def announce(host: str, keys_file: str | None, key_count: int) -> None:
    """One line at start: protected by keys, or open (a warning when reachable from other hosts)."""
    if keys_file is not None:
        log.info("api_keys_required", keys_file=keys_file, keys=key_count)
    elif is_loopback(host):
        log.info("access_open", host=host, hint="no API keys file: every local client may use every model (serve --api-keys FILE)")
    else:
        log.warning(
            "access_open_to_network",
            host=host,
            hint="no API keys file and bound to a non-loopback address: anyone who reaches it may use every model (serve --api-keys FILE)",
        )
