"""Run the router's application on a socket, in this event loop."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass

from aiohttp import web

from router.wire import Listening, start_site

# AppRunner options the application asks for (e.g. keepalive_timeout: how long a
# client may take to send a request's headers, and an idle connection may stay).
RUNNER_OPTIONS: web.AppKey[dict[str, object]] = web.AppKey("runner_options", dict)


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
        runner={"handler_cancellation": True, "access_log": None, **app.get(RUNNER_OPTIONS, {})},
        site={"reuse_port": reuse_port or None},
    )
    bound = port
    server = site._server
    if server is not None and getattr(server, "sockets", None):
        bound = server.sockets[0].getsockname()[1]
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


def run_loop(main: asyncio.coroutines.Coroutine[object, object, int]) -> int:  # type: ignore[name-defined]
    """asyncio.run with uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
