"""Run the router's application on a socket, in this event loop.

aiohttp answers requests it cannot parse (a malformed request line, headers
over the size limit, both Content-Length and Transfer-Encoding) itself, with
a `text/plain` body that quotes the offending bytes. The router's runner
swaps in a request handler that answers those in Ollama's JSON error shape
instead (the path, and so the API, is unknown for a request that could not
be parsed), never echoing what the client sent.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from router.http.apis import api_for
from router.http.errors import RouterError
from router.wire import Listening, start_site


@dataclass(frozen=True, slots=True)
class RunnerOptions:
    """What the application asks of its runner: how long a client may take to send a
    request's headers (and an idle connection may stay), and how long the rest of an
    unread body is drained after an early answer."""

    keepalive_timeout: float = 75.0
    lingering_time: float = 10.0


RUNNER_OPTIONS: web.AppKey[RunnerOptions] = web.AppKey("runner_options", RunnerOptions)


class _ShapedErrors(RequestHandler):
    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)  # too late for any answer: aiohttp closes
        self.log_exception("Error handling request", exc_info=exc)  # redacted by router.access.redact
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "error"
        text = "malformed HTTP request" if status == 400 else f"{reason} (the request could not be handled)"
        response = api_for(request.path).render(RouterError(text, status=status), "")
        response.force_close()
        return response


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _ShapedErrors(self, loop=self._loop, **self._kwargs)


class RouterRunner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        # aiohttp builds its Server in Application._make_handler; the same, with our handler class
        server = await super()._make_server()
        return _Server(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )


def _options(app: web.Application) -> dict[str, float]:
    options = app.get(RUNNER_OPTIONS, RunnerOptions())
    return {"keepalive_timeout": options.keepalive_timeout, "lingering_time": options.lingering_time}


@dataclass(slots=True)
class RunningApp(Listening):
    """The router's application being served."""


async def start_app(app: web.Application, host: str, port: int, *, reuse_port: bool = False) -> RunningApp:
    """Start serving; `handler_cancellation` makes a client's departure cancel its
    handler, which closes the upstream request so the GPU stops."""
    runner, site = await start_site(
        app,
        host,
        port,
        runner={"handler_cancellation": True, "access_log": None, **_options(app)},
        site={"reuse_port": reuse_port or None},
        runner_class=RouterRunner,
    )
    bound = port
    server: Any = site._server
    if server is not None and getattr(server, "sockets", None):
        bound = int(server.sockets[0].getsockname()[1])
    return RunningApp(runner, host, bound)


async def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run_loop(main: Coroutine[Any, Any, int]) -> int:
    """asyncio.run with uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return int(uvloop.run(main))
