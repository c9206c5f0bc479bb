"""Handler wrappers: the gate (CORS, Host check) and the stats every model endpoint feeds."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

from aiohttp import web

from router.emulator.gate import Gate
from router.emulator.state import Emulator

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def guarded(handler: Handler, gate: Gate) -> Handler:
    """CORS and the Host check (8.1, 8.2) as a handler wrapper (cheaper than a middleware)."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        early = gate.check(request)
        if early is not None:
            return early
        return await handler(request)

    return wrapper


def counted(emulator: Emulator, handler: Handler, gate: Gate) -> Handler:
    """Wrap a model endpoint so /_emulator/stats sees it (see stats.py for the rules),
    with the gate folded in to keep one wrapper on the hot path."""
    stats = emulator.stats

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        early = gate.check(request)
        if early is not None:
            return early
        stats.requests += 1
        stats.in_flight += 1
        if stats.in_flight > stats.max_in_flight:
            stats.max_in_flight = stats.in_flight
        try:
            return await handler(request)
        except asyncio.CancelledError:
            stats.cancelled += 1
            raise
        finally:
            stats.in_flight -= 1

    return wrapper
