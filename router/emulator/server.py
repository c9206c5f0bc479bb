"""The emulator's aiohttp application and how to run it.

Public API:
    EmulatorConfig                 settings (see config.py)
    create_app(config) -> web.Application
    await run_emulator(config) -> RunningEmulator (.url, .port, .app, .emulator, await .close())

Routing mimics gin: unknown path -> 404 `404 page not found`, known path with
another method -> 405 `405 method not allowed` with `Allow`, a trailing slash
-> redirect (301 GET, 307 otherwise) to the canonical path (1.2).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from router.emulator.admin import AdminApi
from router.emulator.catalog_api import CatalogApi
from router.emulator.common import counted
from router.emulator.config import EmulatorConfig
from router.emulator.hosts import HostCheck, is_loopback_bind
from router.emulator.native import NativeApi
from router.emulator.openai_api import OpenAIApi
from router.emulator.state import Emulator
from router.wire import TEXT

__all__ = ["EMULATOR_KEY", "EmulatorConfig", "RunningEmulator", "create_app", "run_emulator"]

EMULATOR_KEY: web.AppKey[Emulator] = web.AppKey("emulator", Emulator)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
NOT_FOUND = b"404 page not found"
NOT_ALLOWED = b"405 method not allowed"


def _not_found(request: web.Request) -> web.Response:
    return web.Response(status=404, body=NOT_FOUND, headers={"Content-Type": TEXT})


def _routes(emulator: Emulator) -> dict[str, dict[str, Handler]]:
    """path -> method -> handler; HEAD is only where upstream registers it."""
    catalog = CatalogApi(emulator)
    native = NativeApi(emulator)
    openai = OpenAIApi(emulator, native)
    admin = AdminApi(emulator)

    def model(handler: Handler) -> Handler:
        return counted(emulator, handler)

    return {
        "/": {"GET": catalog.root, "HEAD": catalog.root},
        "/api/version": {"GET": catalog.version, "HEAD": catalog.version},
        "/api/tags": {"GET": catalog.tags, "HEAD": catalog.tags},
        "/api/ps": {"GET": catalog.ps},
        "/api/show": {"POST": catalog.show},
        "/api/pull": {"POST": catalog.pull},
        "/api/delete": {"DELETE": catalog.delete},
        "/api/copy": {"POST": catalog.copy},
        "/api/generate": {"POST": model(native.generate)},
        "/api/chat": {"POST": model(native.chat)},
        "/api/embed": {"POST": model(native.embed)},
        "/api/embeddings": {"POST": model(native.embeddings)},
        "/v1/chat/completions": {"POST": model(openai.chat)},
        "/v1/completions": {"POST": model(openai.completions)},
        "/v1/embeddings": {"POST": model(openai.embeddings)},
        "/v1/models": {"GET": openai.models},
        "/v1/models/{model}": {"GET": openai.model},
        "/_emulator/faults": {"GET": admin.list_faults, "POST": admin.add_fault, "DELETE": admin.clear_faults},
        "/_emulator/stats": {"GET": admin.stats},
    }


def _method_not_allowed(methods: list[str]) -> Handler:
    allow = ", ".join(methods)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=405, body=NOT_ALLOWED, headers={"Content-Type": TEXT, "Allow": allow})

    return handler


def _fallback(paths: set[str]) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        path = request.path
        canonical = path.rstrip("/")
        if path != "/" and path.endswith("/") and (canonical in paths or canonical.startswith("/v1/models/")):
            status = 301 if request.method == "GET" else 307
            location = canonical + (f"?{request.query_string}" if request.query_string else "")
            return web.Response(status=status, headers={"Location": location})
        return _not_found(request)

    return handler


def _host_guard(check: HostCheck) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not check.allowed(request.headers.get("Host", "")):
            return web.Response(status=403)
        return await handler(request)

    return guard


def create_app(config: EmulatorConfig) -> web.Application:
    """An aiohttp app that serves one emulated Ollama.

    Client disconnects cancel their handler (generation stops, queued requests
    are dropped) and the access log is off, whoever runs the app.
    """
    emulator = Emulator.build(config)
    middlewares = []
    if config.check_host and is_loopback_bind(config.host):
        middlewares.append(_host_guard(HostCheck()))
    app = web.Application(
        middlewares=middlewares,
        handler_args={"handler_cancellation": True, "access_log": None},
        client_max_size=64 * 1024 * 1024,
    )
    app[EMULATOR_KEY] = emulator
    routes = _routes(emulator)
    for path, methods in routes.items():
        resource = app.router.add_resource(path)
        for method, handler in methods.items():
            resource.add_route(method, handler)
        resource.add_route("*", _method_not_allowed(list(methods)))
    app.router.add_route("*", "/{tail:.*}", _fallback(set(routes)))

    async def shutdown(app: web.Application) -> None:
        await emulator.scheduler.close()

    app.on_cleanup.append(shutdown)
    return app


@dataclass(slots=True)
class RunningEmulator:
    app: web.Application
    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def emulator(self) -> Emulator:
        return self.app[EMULATOR_KEY]

    async def close(self) -> None:
        await self.runner.cleanup()


async def run_emulator(config: EmulatorConfig) -> RunningEmulator:
    """Serve `config` in the current event loop; port 0 picks a free port."""
    app = create_app(config)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, config.host or None, config.port, backlog=1024, reuse_address=True)
    await site.start()
    port = config.port
    server = site._server  # the bound socket tells us the port when 0 was asked
    if server is not None and getattr(server, "sockets", None):
        port = server.sockets[0].getsockname()[1]
    return RunningEmulator(app, runner, config.host or "0.0.0.0", port)


async def serve_forever(config: EmulatorConfig, stop: asyncio.Event) -> None:
    running = await run_emulator(config)
    try:
        await stop.wait()
    finally:
        await running.close()
