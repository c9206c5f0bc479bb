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

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from router.emulator.admin import AdminApi
from router.emulator.anthropic_api import AnthropicApi
from router.emulator.catalog_api import CatalogApi
from router.emulator.cloud import DETAILS_UNAVAILABLE, Cloud
from router.emulator.config import EmulatorConfig
from router.emulator.cors import Cors
from router.emulator.gate import Gate
from router.emulator.hosts import HostCheck
from router.emulator.native import NativeApi
from router.emulator.openai_api import OpenAIApi
from router.emulator.responses_api import ResponsesApi
from router.emulator.state import Emulator
from router.emulator.transcription import TranscriptionApi
from router.emulator.versions import serves
from router.emulator.wrappers import counted, guarded
from router.wire import TEXT, Listening, is_loopback, start_site

__all__ = ["EMULATOR_KEY", "EmulatorConfig", "RunningEmulator", "create_app", "run_emulator"]

EMULATOR_KEY: web.AppKey[Emulator] = web.AppKey("emulator", Emulator)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
NOT_FOUND = b"404 page not found"
NOT_ALLOWED = b"405 method not allowed"


def _not_found(request: web.Request) -> web.Response:
    return web.Response(status=404, body=NOT_FOUND, headers={"Content-Type": TEXT})


def _routes(emulator: Emulator, gate: Gate) -> dict[str, dict[str, Handler]]:
    """path -> method -> handler; HEAD is only where upstream registers it."""
    catalog = CatalogApi(emulator)
    native = NativeApi(emulator)
    openai = OpenAIApi(emulator, native)
    admin = AdminApi(emulator)
    cloud = Cloud(emulator)
    responses = ResponsesApi(emulator, cloud)
    messages = AnthropicApi(emulator, cloud)
    transcriptions = TranscriptionApi(emulator, cloud)

    def model(handler: Handler) -> Handler:
        # The gate is folded in; a cloud model name never reaches the handler.
        return counted(emulator, cloud.passthrough(handler), gate)

    def plain(handler: Handler) -> Handler:
        return guarded(handler, gate)

    routes: dict[str, dict[str, Handler]] = {
        "/": {"GET": plain(catalog.root), "HEAD": plain(catalog.root)},
        "/api/version": {"GET": plain(catalog.version), "HEAD": plain(catalog.version)},
        "/api/tags": {"GET": plain(catalog.tags), "HEAD": plain(catalog.tags)},
        "/api/ps": {"GET": plain(catalog.ps)},
        "/api/status": {"GET": plain(cloud.status)},
        "/api/show": {"POST": plain(cloud.passthrough(catalog.show, DETAILS_UNAVAILABLE))},
        "/api/pull": {"POST": plain(catalog.pull)},
        "/api/delete": {"DELETE": plain(catalog.delete)},
        "/api/copy": {"POST": plain(catalog.copy)},
        "/api/generate": {"POST": model(native.generate)},
        "/api/chat": {"POST": model(native.chat)},
        "/api/embed": {"POST": model(native.embed)},
        "/api/embeddings": {"POST": model(native.embeddings)},
        "/v1/chat/completions": {"POST": model(openai.chat)},
        "/v1/completions": {"POST": model(openai.completions)},
        "/v1/embeddings": {"POST": model(openai.embeddings)},
        "/v1/models": {"GET": plain(openai.models)},
        "/v1/models/{model}": {"GET": plain(cloud.path_passthrough(openai.model))},
        "/v1/responses": {"POST": model(responses.create)},
        "/v1/messages": {"POST": model(messages.create)},
        # No cloud passthrough on this route (docs/ollama-wire-2026.md §6.2): the handler decides.
        "/v1/audio/transcriptions": {"POST": counted(emulator, transcriptions.create, gate)},
        "/_emulator/faults": {
            "GET": plain(admin.list_faults), "POST": plain(admin.add_fault), "DELETE": plain(admin.clear_faults),
        },
        "/_emulator/stats": {"GET": plain(admin.stats)},
    }
    # An older release answers 404 where a newer one has a route (docs/ollama-wire-2026.md §1).
    return {path: methods for path, methods in routes.items() if serves(emulator.config, path)}


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


def create_app(config: EmulatorConfig) -> web.Application:
    """An aiohttp app that serves one emulated Ollama.

    Client disconnects cancel their handler (generation stops, queued requests
    are dropped) and the access log is off, whoever runs the app.
    """
    emulator = Emulator.build(config)
    hosts = HostCheck() if config.check_host and is_loopback(config.host) else None
    cors = Cors(config.origins)
    gate = Gate(cors, hosts)
    app = web.Application(
        handler_args={"handler_cancellation": True, "access_log": None},
        client_max_size=64 * 1024 * 1024,
    )
    app[EMULATOR_KEY] = emulator
    routes = _routes(emulator, gate)
    for path, methods in routes.items():
        resource = app.router.add_resource(path)
        for method, handler in methods.items():
            resource.add_route(method, handler)
        resource.add_route("*", guarded(_method_not_allowed(list(methods)), gate))
    app.router.add_route("*", "/{tail:.*}", guarded(_fallback(set(routes)), gate))

    async def shutdown(app: web.Application) -> None:
        await emulator.scheduler.close()

    app.on_cleanup.append(shutdown)
    app.on_response_prepare.append(cors.on_prepare)
    return app


@dataclass(slots=True)
class RunningEmulator(Listening):
    app: web.Application

    @property
    def emulator(self) -> Emulator:
        return self.app[EMULATOR_KEY]


async def run_emulator(config: EmulatorConfig) -> RunningEmulator:
    """Serve `config` in the current event loop; port 0 picks a free port."""
    app = create_app(config)
    runner, _ = await start_site(
        app, config.host or None, config.port, runner={"shutdown_timeout": 0.5}, site={"reuse_address": True}
    )
    # The bound address tells the port when 0 was asked for.
    port = runner.addresses[0][1] if runner.addresses else config.port
    return RunningEmulator(runner, config.host or "0.0.0.0", port, app)

