"""The router's aiohttp application: routes, the edge middleware, and the
background tasks' lifecycle (sessions, health, keep-warm)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import structlog
from aiohttp import web

from router.access.install import install as install_access
from router.catalog import Catalog
from router.fleet.balancer import Balancer
from router.fleet.health import HealthMonitor
from router.fleet.keepwarm import KeepWarm
from router.fleet.state import Fleet
from router.logs import log_access
from router.server import admin, ollama_api, openai_api
from router.server.context import RECORD, SERVICES, Services
from router.server.errors import (
    BodyTooLarge,
    MethodNotAllowed,
    NotFoundRoute,
    RouterError,
    api_of,
)
from router.server.proxy import Proxy, Record
from router.settings import RouterSettings

log = structlog.get_logger("router.server")
access_log = structlog.get_logger("router.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
StartupHook = Callable[[Services], Awaitable[None]]


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


def _render_http_exception(exc: web.HTTPException, api: str) -> web.StreamResponse:
    if isinstance(exc, web.HTTPNotFound):
        return NotFoundRoute("unknown path").render(api)
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return MethodNotAllowed(f"method {exc.method} not allowed", ", ".join(sorted(exc.allowed_methods))).render(api)
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return BodyTooLarge(f"request body too large (limit {exc.max_size} bytes)" if hasattr(exc, "max_size") else "request body too large").render(api)
    return RouterError(exc.reason or "error", status=exc.status).render(api)


CLIENT_LEFT = 499  # nginx's code for a client that closed the connection first


def make_edge(svc: Services) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """The outermost middleware: request id, errors in the API's shape, and once
    per request the log line and `svc.observers` (metrics), from one Record."""
    observers = svc.observers  # filled in by install_access after this is made

    @web.middleware
    async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
        record = Record(_request_id(request), api_of(request.path), request.method, request.path)
        request[RECORD] = record
        try:
            response = await handler(request)
        except RouterError as exc:
            record.error = exc.message
            response = exc.render(record.api)
        except web.HTTPException as exc:
            response = _render_http_exception(exc, record.api)
        except asyncio.CancelledError:
            record.client_left = True
            _finish(record, CLIENT_LEFT, "", observers)
            raise
        except Exception as exc:  # the one place that turns a bug into a 500, never a traceback to the client
            log.exception("unhandled_error", request_id=record.request_id, path=request.path)
            record.error = type(exc).__name__
            response = RouterError("internal router error", status=500).render(record.api)
        if not response.prepared:
            response.headers["X-Request-Id"] = record.request_id
        if record.bytes_out == 0 and isinstance(response, web.Response) and response.body is not None:
            record.bytes_out = len(response.body)  # type: ignore[arg-type]
        _finish(record, response.status, response.headers.get("Content-Type", ""), observers)
        return response

    return edge


def _finish(record: Record, status: int, content_type: str, observers: list[Callable[[Record, int, str], None]]) -> None:
    _log(record, status)
    if record.client_left:
        status = CLIENT_LEFT  # metrics count it apart; the log line says client_left
    for observe in observers:
        observe(record, status, content_type)


def _log(record: Record, status: int) -> None:
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
        "client_left": record.client_left or None,
        "error": record.error,
        "key": record.key_name,  # the API key's name, never the key
    }
    log_access(access_log, {k: v for k, v in fields.items() if v is not None})


def build_services(catalog: Catalog, settings: RouterSettings) -> Services:
    fleet = Fleet.from_catalog(catalog, max_queue=settings.max_queue, failure_threshold=settings.failure_threshold)
    balancer = Balancer(fleet, queue_timeout=settings.queue_timeout)
    keepwarm = KeepWarm(fleet, margin=max(3 * settings.health_interval, 30.0))
    health = HealthMonitor(
        fleet,
        interval=settings.health_interval,
        probe_timeout=settings.probe_timeout,
        on_probe=keepwarm.after_probe if settings.keep_warm else None,
    )
    proxy = Proxy(catalog, fleet, balancer, ttft_timeout=settings.ttft_timeout, connect_timeout=settings.connect_timeout)
    return Services(settings, catalog, fleet, balancer, proxy, health, keepwarm)


def _session(settings: RouterSettings) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60, enable_cleanup_closed=True)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=settings.connect_timeout)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
    )


async def _deep_checks(svc: Services) -> None:
    while True:
        await asyncio.sleep(svc.settings.deep_check_interval)
        await svc.keepwarm.deep_check(svc.settings.ttft_timeout)


def lifecycle(svc: Services, before_preload: list[StartupHook]) -> Callable[[web.Application], AsyncIterator[None]]:
    async def run(app: web.Application) -> AsyncIterator[None]:
        for state in svc.fleet.containers.values():
            state.session = _session(svc.settings)
        await svc.health.probe_all()
        svc.health.start()

        async def warm_up() -> None:
            for hook in before_preload:
                await hook(svc)
            if svc.settings.keep_warm:
                await svc.keepwarm.preload()
            else:
                svc.fleet.ready = True

        tasks = [asyncio.create_task(warm_up(), name="preload")]
        if svc.settings.deep_check_interval > 0:
            tasks.append(asyncio.create_task(_deep_checks(svc), name="deep-check"))
        log.info("router_started", models=len(svc.catalog.models), containers=len(svc.fleet.containers))
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await svc.health.stop()
        await svc.keepwarm.stop()
        svc.proxy.close()
        for state in svc.fleet.containers.values():
            if state.session is not None:
                with contextlib.suppress(Exception):
                    await state.session.close()

    return run


def create_app(
    catalog: Catalog,
    settings: RouterSettings,
    *,
    before_preload: list[StartupHook] | None = None,
    middlewares: list[Callable[..., Awaitable[web.StreamResponse]]] | None = None,
) -> web.Application:
    svc = build_services(catalog, settings)
    app = web.Application(
        middlewares=[make_edge(svc), *(middlewares or [])],
        client_max_size=settings.max_body_bytes,
        handler_args={"max_field_size": 16 * 1024},
    )
    app[SERVICES] = svc
    ollama_api.add_routes(app)
    openai_api.add_routes(app)
    admin.add_routes(app)
    install_access(app, svc)  # API keys, rate limits, body limits, /metrics
    app.cleanup_ctx.append(lifecycle(svc, before_preload or []))
    return app
