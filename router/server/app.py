"""The router's aiohttp application: routes, the middleware chain, and the
background tasks' lifecycle.

Middleware, outermost first:
- edge: pins the current runtime to the request, gives it a record and a
  request id, applies the runtime's origin policy (foreign browser origins,
  rebound Host headers, CORS preflights), renders every error in the API's
  shape (the one place), and once per request writes the access line and the
  metrics from the record;
- auth (with a keys file): the key, admin paths, the key's rate.
Handlers read bodies through the runtime's body reader (size and time limits).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from router.access.auth import announce, auth_middleware
from router.access.origin import OriginPolicy
from router.access.redact import redact_server_logs
from router.catalog import Catalog
from router.http.apis import Api, api_for
from router.http.errors import BodyTooLarge, MethodNotAllowed, NotFoundRoute, RouterError, Unavailable
from router.http.record import Record
from router.limits import Limits, LimitsUnavailable
from router.logs import AccessLog
from router.server import admin, anthropic_api, console, event_stream, ollama_api, openai_api, transcriptions
from router.server.context import RECORD, RUNTIME, SERVICES, record_of
from router.server.reload import RELOADER, CatalogSource, Reloader
from router.server.runner import RUNNER_OPTIONS, RunnerOptions
from router.server.runtime import Runtime, Services, build_services
from router.server.watch import watch_file
from router.settings import RouterSettings

log = structlog.get_logger("router.server")

StartupHook = Callable[[Catalog], Awaitable[None]]  # runs before the start-up preload

CLIENT_LEFT = 499  # nginx's code for a client that closed the connection first
LINGER = 2.0  # after an early answer (413, 408) the rest of an unread body is drained this long at most
JANITOR_INTERVAL = 0.5


class _RequestIds:
    """24 hex characters: a random per-process prefix and a counter (no
    getrandom syscall per request; a new prefix in a forked child)."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter) & 0xFFFFFFFF:08x}"


_request_ids = _RequestIds()


def _request_id(request: web.Request) -> str:
    given = request.headers.get("X-Request-Id")
    if given and len(given) <= 128 and given.isprintable():
        return given
    return _request_ids.next()


def _as_router_error(exc: web.HTTPException) -> RouterError:
    if isinstance(exc, web.HTTPNotFound):
        return NotFoundRoute("unknown path")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return MethodNotAllowed(f"method {exc.method} not allowed", ", ".join(sorted(exc.allowed_methods)))
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return BodyTooLarge("request body too large")
    return RouterError(exc.reason or "error", status=exc.status)


def make_edge(services: Services) -> Middleware:
    holder, metrics, access_log = services.holder, services.metrics, services.access_log

    @web.middleware
    async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
        api = api_for(request.path)
        record = Record(_request_id(request), api.name, request.method, request.path)
        request[RECORD] = record
        runtime = request[RUNTIME] = holder.current  # the request keeps the runtime it started under
        runtime.pins.count += 1  # the janitor keeps what the catalogs of running requests may still use
        try:
            response = await _respond(runtime, request, handler, api, record)
        except asyncio.CancelledError:
            record.client_left = True
            _finish(record, CLIENT_LEFT, "", access_log, metrics.after_request)
            raise
        finally:
            runtime.pins.count -= 1
        if not response.prepared:
            response.headers["X-Request-Id"] = record.request_id
        if record.bytes_out == 0 and isinstance(response, web.Response) and response.body is not None:
            record.bytes_out = len(response.body)  # type: ignore[arg-type]
        _finish(record, response.status, response.headers.get("Content-Type", ""), access_log, metrics.after_request)
        return response

    return edge


async def _respond(runtime: Runtime, request: web.Request, handler: Handler, api: Api, record: Record) -> web.StreamResponse:
    """The handler's answer, or the error it raised rendered in the API's shape (the one place)."""
    try:
        # Host and Origin checks, CORS preflights: here rather than a middleware of their
        # own (one layer less on every request), by the runtime's current policy
        return await runtime.origins.gate(request, handler)
    except RouterError as exc:
        record.error = exc.message
        return api.render(exc, record.request_id)
    except LimitsUnavailable as exc:  # limits held in Redis, Redis lost, set to fail closed
        record.error = str(exc)
        return api.render(Unavailable(str(exc), retry_after=1), record.request_id)
    except web.HTTPException as exc:
        return api.render(_as_router_error(exc), record.request_id)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the one place that turns a bug into a 500, never a traceback to the client
        log.exception("unhandled_error", request_id=record.request_id, path=request.path)
        record.error = type(exc).__name__
        return api.render(RouterError("internal router error", status=500), record.request_id)


def _finish(
    record: Record, status: int, content_type: str, access_log: AccessLog, observe: Callable[[Record, int, str], None]
) -> None:
    record.status = status
    fields = {
        "request_id": record.request_id,
        "method": record.method,
        "path": record.path,
        "model": record.model,
        "served_model": record.served_model,
        "container": record.container,
        "status": status,
        "bytes": record.bytes_out,
        "ttfb_ms": round(record.ttfb * 1000, 2) if record.ttfb is not None else None,
        "duration_ms": round((time.perf_counter() - record.started) * 1000, 2),
        "attempts": record.attempts or None,
        "fallback_from": record.fallback_from,
        "stream_broken": record.stream_broken,
        "pinned": record.pinned,
        "client_left": record.client_left or None,
        "error": record.error,
        "key": record.key_name,  # the API key's name, never the key
    }
    access_log.write({k: v for k, v in fields.items() if v is not None})
    # metrics count a client that left apart (499); the log line says client_left
    observe(record, CLIENT_LEFT if record.client_left else status, content_type)


async def _deep_checks(services: Services) -> None:
    while True:
        settings = services.runtime.settings
        await asyncio.sleep(settings.deep_check_interval or settings.health_interval)
        if services.runtime.settings.deep_check_interval > 0:
            await services.keepwarm.deep_check()


async def _janitor(services: Services) -> None:
    """Containers that left the catalog go once their last request ended."""
    while True:
        await asyncio.sleep(JANITOR_INTERVAL)
        for state in services.fleet.drained(keep=services.holder.pinned_states()):
            services.health.forget(state)
            await state.client.close()


def lifecycle(services: Services, reloader: Reloader | None, before_preload: Sequence[StartupHook]) -> Callable[[web.Application], AsyncIterator[None]]:
    async def run(app: web.Application) -> AsyncIterator[None]:
        settings = services.runtime.settings
        keys = services.keys
        announce(settings.host, keys.path if keys else None, len(keys.store.keys) if keys else 0)
        await services.limits.start()
        await services.health.probe_all()
        services.health.start()

        async def warm_up() -> None:
            for hook in before_preload:
                await hook(services.runtime.catalog)
            if services.keepwarm.enabled:
                await services.keepwarm.preload()
            services.fleet.ready = True

        tasks = [
            asyncio.create_task(warm_up(), name="preload"),
            asyncio.create_task(_deep_checks(services), name="deep-check"),
            asyncio.create_task(_janitor(services), name="janitor"),
        ]
        if keys is not None:
            tasks.append(asyncio.create_task(
                watch_file(keys.path, lambda: _reload_keys(services)), name="watch-keys"))
        if reloader is not None and settings.watch:
            tasks.append(asyncio.create_task(
                watch_file(reloader.source.path, lambda: reloader.reload("file changed")), name="watch-catalog"))
        log.info("router_started", models=len(services.runtime.catalog.models), containers=len(services.fleet.containers))
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await services.health.stop()
        await services.keepwarm.stop()
        for state in list(services.fleet.all_states()):
            await state.client.close()
        await services.limits.close()

    return run


async def _reload_keys(services: Services) -> None:
    if services.keys is not None:
        services.keys.reload(services.runtime.catalog, services.events)


async def reload_everything(services: Services, reloader: Reloader | None, trigger: str) -> None:
    """SIGHUP: the catalog (when the router knows its file), then the keys file."""
    if reloader is not None:
        await reloader.reload(trigger)
    await _reload_keys(services)


def create_app(
    catalog: Catalog,
    settings: RouterSettings,
    *,
    source: CatalogSource | None = None,
    source_text: str | None = None,
    limits: Limits | None = None,
    access_log: AccessLog | None = None,
    before_preload: Sequence[StartupHook] = (),
) -> web.Application:
    """The router for `catalog`; `source`: its file, for reloads.

    Raises KeysFileError when the configured keys file cannot be used."""
    services = build_services(catalog, settings, source_text=source_text, limits=limits, access_log=access_log)
    reloader = Reloader(services, source) if source is not None else None
    redact_server_logs()
    middlewares: list[Middleware] = [make_edge(services)]
    if services.keys is not None:
        middlewares.append(auth_middleware(services.keys, services.limits, services.events, record_of))
    app = web.Application(
        middlewares=middlewares,
        client_max_size=settings.max_body_bytes,
        handler_args={"max_field_size": 16 * 1024},
    )
    app[SERVICES] = services
    app[RELOADER] = reloader
    # keepalive_timeout bounds the time to a request's headers (and an idle connection's life)
    app[RUNNER_OPTIONS] = RunnerOptions(keepalive_timeout=settings.header_timeout, lingering_time=min(LINGER, settings.body_timeout))
    app.on_response_prepare.append(OriginPolicy.on_prepare)
    ollama_api.add_routes(app)
    openai_api.add_routes(app)
    anthropic_api.add_routes(app)
    app.router.add_post(transcriptions.PATH, transcriptions.transcribe)
    admin.add_routes(app)
    event_stream.add_routes(app)
    console.add_routes(app)
    app.cleanup_ctx.append(lifecycle(services, reloader, before_preload))
    return app


__all__ = ["create_app", "reload_everything"]
