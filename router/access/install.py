"""Wire access control, limits and metrics into the router's application.

Metrics observe every answer (401s included) from the `edge` middleware's
record; middleware order after `edge`: auth (key, admin paths, rate limit,
model allowlist) → the handler, which reads its body through `svc.read_body`
(size and time limits).
"""

from __future__ import annotations

from aiohttp import web

from router.access.auth import announce, auth_middleware
from router.access.keys import KeyStore
from router.access.limits import BodyReader
from router.access.redact import redact_server_logs
from router.server.context import Services
from router.server.metrics import METRICS_KEY, RouterMetrics
from router.server.runner import RUNNER_OPTIONS

LINGER = 2.0


def install(app: web.Application, svc: Services) -> None:
    """Raises KeysFileError when the configured keys file cannot be used."""
    settings = svc.settings
    redact_server_logs()
    store = KeyStore.load(settings.api_keys_file, svc.catalog) if settings.api_keys_file else None
    metrics = RouterMetrics(svc.catalog, svc.fleet, cold_load_threshold=settings.cold_load_threshold)
    svc.extras[METRICS_KEY] = metrics
    svc.observers.append(metrics.after_request)
    if store is not None:
        app.middlewares.append(auth_middleware(store))
    svc.read_body = BodyReader(settings.max_body_bytes, settings.body_timeout, settings.log_bodies)
    app.router.add_get("/metrics", metrics.handle)
    # keepalive_timeout bounds the time to a request's headers; after an early answer
    # (413, 408) the rest of an unread body is drained for at most LINGER seconds
    app[RUNNER_OPTIONS] = {"keepalive_timeout": settings.header_timeout, "lingering_time": min(LINGER, settings.body_timeout)}

    async def on_startup(app: web.Application) -> None:
        announce(settings.host, settings.api_keys_file, len(store.keys) if store else 0)

    app.on_startup.append(on_startup)
