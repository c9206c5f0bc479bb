"""Who is calling, may they use this path, are they within their rate.

Probes (`/healthz`, `/readyz`) and the console's files (`/ui/`) are always
open; `/metrics`, `/router/status` and `/router/reload` need an admin key;
every other path needs a key, the console's data (`/router/events`) too: a
non-admin key gets only what concerns its own models there. Without a keys file the router is open and says so at start.

The keys file can change while the router runs (`keys revoke`, `keys rotate`,
an edit): `KeyRing.reload` swaps in the new keys between requests, and keeps
the old ones when the new file is bad.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from router.access.keys import ApiKey, KeysFileError, KeyStore, presented_key
from router.catalog import Catalog
from router.events import EventHub
from router.http.errors import Forbidden, TooManyRequests, Unauthorized
from router.http.record import Record
from router.limits import Limits
from router.wire import is_loopback

log = structlog.get_logger("router.access")


OPEN_PATHS = frozenset({"/healthz", "/readyz"})
# The console's own files are open (they hold no data; the page asks for a key).
OPEN_PREFIXES = ("/ui/",)
ADMIN_PATHS = frozenset({"/metrics", "/router/status", "/router/reload"})

# The calling key, for handlers (absent without a keys file: everyone may use everything).
CALLER: web.RequestKey[ApiKey] = web.RequestKey("caller", ApiKey)


class KeyRing:
    """The current keys of one keys file; replaced whole on reload."""

    def __init__(self, path: str, catalog: Catalog) -> None:
        self.path = path
        self.store = KeyStore.load(path, catalog)  # KeysFileError at start: `serve` refuses to run
        self.last_error: str | None = None

    def check(self, catalog: Catalog) -> KeyStore:
        """The keys file read against `catalog` (KeysFileError when it cannot be used)."""
        return KeyStore.load(self.path, catalog)

    def install(self, store: KeyStore) -> None:
        self.store = store
        self.last_error = None

    def reload(self, catalog: Catalog, events: EventHub) -> str | None:
        """Re-read the file; None when the new keys are in use, else what is wrong (the old keys stay)."""
        try:
            store = self.check(catalog)
        except KeysFileError as exc:
            self.last_error = str(exc)
            log.error("keys_reload_failed", error=self.last_error)
            events.publish("keys_reload_failed", error=self.last_error)
            return self.last_error
        self.install(store)
        log.info("keys_reloaded", keys_file=self.path, keys=len(store.keys))
        events.publish("keys_reloaded", keys=len(store.keys))
        return None


def auth_middleware(ring: KeyRing, limits: Limits, events: EventHub, record_of: Callable[[web.Request], Record]) -> Middleware:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) or path == "/ui":
            return await handler(request)
        presented = presented_key(request.headers)
        if presented is None:
            raise Unauthorized("missing API key: send 'Authorization: Bearer KEY' or 'x-api-key: KEY'")
        key = ring.store.find(presented)
        if key is None:
            raise Unauthorized("invalid API key")
        record_of(request).key_name = key.name
        if path in ADMIN_PATHS:
            if not key.admin:
                raise Forbidden(f"{path} needs an admin key")
        elif key.per_second is not None:
            wait = await limits.take_token(key.name, key.per_second, key.burst)
            if wait:
                events.publish("key_rate_limited", key=key.name, retry_after=round(wait, 2))
                raise TooManyRequests(f"rate limit of key '{key.name}' exceeded; retry in {wait:.1f}s", retry_after=math.ceil(wait))
        request[CALLER] = key
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

