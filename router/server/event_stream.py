"""`GET /router/events`: the fleet's events and snapshots as server-sent events.

    curl -N localhost:8080/router/events                      # events and a snapshot every second
    curl -N 'localhost:8080/router/events?snapshot=0'         # events only
    curl -N -H 'Last-Event-ID: 5f3a9c1e.41' .../router/events # resume after event 41

On connect: the recent events (or, with `Last-Event-ID`, those after it), then
live ones, each as `id:`, `event:` (its kind) and `data:` (one JSON line).
`event: snapshot` (no id) carries the fleet's state and last-minute figures
every `snapshot_interval`; a `: heartbeat` comment comes every
`events_heartbeat` seconds whatever else is sent. Ids are `INSTANCE.NUMBER`:
after a router restart, a client's old id names another instance and it gets
the recent events afresh.

A client that reads slowly never slows the router: events it cannot take are
dropped for it alone (router.events), and it is told how many in an
`event: dropped` before the next one it gets; a write that cannot complete
within STALL_SECONDS ends the connection. A non-admin key gets only what
concerns its own models (router.server.scope). The stream ends when the
router shuts down, and when the caller's key is revoked.
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Iterable
from typing import Any

import orjson
import structlog
from aiohttp import web

from router import wire
from router.access.keys import ApiKey, presented_key
from router.events import Event, Subscription
from router.http.errors import BadRequest, Unavailable
from router.server.context import SERVICES, caller_of, services
from router.server.reload import RELOADER
from router.server.scope import Scope
from router.server.status import Snapshots

log = structlog.get_logger("router.events")

REPLAY = 200  # recent events a new connection gets first
MAX_STREAMS = 64  # open event streams per router process
STALL_SECONDS = 30.0  # a client that takes nothing for this long is cut off
RETRY_MS = 1000  # EventSource's reconnection delay
FLAGS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def frame(kind: str, data: Any, event_id: str | None = None) -> bytes:
    """One server-sent event; orjson writes no newlines, so `data` is one line."""
    head = f"id: {event_id}\nevent: {kind}\n" if event_id else f"event: {kind}\n"
    return head.encode() + b"data: " + orjson.dumps(data) + b"\n\n"


class EventStreams:
    """The app's open streams: their instance id, their number, their end at shutdown."""

    def __init__(self) -> None:
        self.instance = secrets.token_hex(4)
        self.open: set[EventStream] = set()
        self.closing = asyncio.Event()

    def event_id(self, event: Event) -> str:
        return f"{self.instance}.{event.id}"

    def resume_after(self, header: str | None) -> int | None:
        """The event number a client's Last-Event-ID names in this instance (None: start afresh)."""
        if header is None or not header.strip():
            return None
        instance, _, number = header.strip().partition(".")
        if not number.isdigit() or len(number) > 18:
            raise BadRequest("Last-Event-ID must be an id this stream sent (INSTANCE.NUMBER)")
        return int(number) if instance == self.instance else None

    async def on_shutdown(self, app: web.Application) -> None:
        """Every stream ends now: waiting ones at once, one stuck writing to its client by closing its connection."""
        self.closing.set()
        for stream in list(self.open):
            stream.abort_if_writing()


EVENT_STREAMS: web.AppKey[EventStreams] = web.AppKey("event_streams", EventStreams)
SNAPSHOTS: web.AppKey[Snapshots] = web.AppKey("snapshots", Snapshots)


class EventStream:
    """One client's stream."""

    def __init__(self, request: web.Request, subscription: Subscription, streams: EventStreams) -> None:
        self.request = request
        self.subscription = subscription
        self.streams = streams
        self.response = web.StreamResponse(headers={
            "Content-Type": wire.SSE + "; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # a proxy in front must not hold events back
        })
        self.writing = False
        self._caller: ApiKey | None = caller_of(request)
        self._scope: Scope | None = None

    def abort_if_writing(self) -> None:
        if self.writing and self.request.transport is not None:
            self.request.transport.abort()

    def scope(self) -> Scope | None:
        """What the caller may see now; None when its key is no longer valid (revoked, rotated)."""
        svc = services(self.request)
        caller = self._caller
        if svc.keys is not None:
            presented = presented_key(self.request.headers)
            caller = svc.keys.store.find(presented) if presented is not None else None
            if caller is None:
                return None
        catalog = svc.runtime.catalog
        if self._scope is None or self._scope.catalog is not catalog or caller is not self._caller:
            self._caller = caller
            self._scope = Scope.of(caller, catalog)  # again after a catalog or keys reload
        return self._scope

    async def write(self, data: bytes) -> None:
        self.writing = True
        try:
            async with asyncio.timeout(STALL_SECONDS):
                await self.response.write(data)
        finally:
            self.writing = False

    def events(self, events: Iterable[Event], scope: Scope) -> bytes:
        frames = [self._dropped()]
        for event in events:
            data = scope.shown(event)
            if data is not None:
                frames.append(frame(event.kind, data, self.streams.event_id(event)))
        return b"".join(frames)

    def _dropped(self, missed: int = 0) -> bytes:
        dropped = self.subscription.take_dropped() + missed
        return frame("dropped", {"dropped": dropped}) if dropped else b""

    def snapshot(self, scope: Scope) -> bytes:
        svc = services(self.request)
        interval = svc.runtime.settings.snapshot_interval
        document = self.request.app[SNAPSHOTS].current(max_age=interval / 2)
        return frame("snapshot", scope.narrow(document, svc.window))

    async def run(self, history: list[Event], after: int | None, snapshots: bool) -> web.StreamResponse:
        scope = self.scope()
        try:
            await self.response.prepare(self.request)
            if scope is None:
                return self.response
            await self.write(f"retry: {RETRY_MS}\n\n".encode() + self._replay(history, after, scope))
            await self._follow(snapshots)
        except (TimeoutError, ConnectionError):
            # a stalled or vanished client: drop the connection (aiohttp's own end of the response then fails quietly)
            if self.request.transport is not None:
                self.request.transport.abort()
            return self.response
        await self.response.write_eof()
        return self.response

    def _replay(self, history: list[Event], after: int | None, scope: Scope) -> bytes:
        if after is None:
            return self.events([e for e in history if scope.sees(e)][-REPLAY:], scope)
        missed = history[0].id - after - 1 if history and history[0].id > after + 1 else 0  # gone from the history
        return self._dropped(missed) + self.events([e for e in history if e.id > after], scope)

    async def _follow(self, snapshots: bool) -> None:
        loop = asyncio.get_running_loop()
        queue = self.subscription.queue
        closing = asyncio.ensure_future(self.streams.closing.wait())
        getter: asyncio.Future[Event] | None = None
        next_snapshot = loop.time() if snapshots else math.inf
        next_beat = loop.time() + services(self.request).runtime.settings.events_heartbeat
        try:
            while True:
                if getter is None:
                    getter = asyncio.ensure_future(queue.get())
                timeout = max(0.0, min(next_snapshot, next_beat) - loop.time())
                done, _ = await asyncio.wait((getter, closing), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if closing in done:
                    return
                scope = self.scope()
                if scope is None:
                    await self.write(frame("revoked", {"error": "this API key is no longer valid"}))
                    return
                out = b""
                if getter in done:
                    batch = [getter.result()]
                    getter = None
                    while not queue.empty():
                        batch.append(queue.get_nowait())
                    out += self.events(batch, scope)
                settings = services(self.request).runtime.settings
                now = loop.time()
                if now >= next_snapshot:
                    out += self.snapshot(scope)
                    next_snapshot = now + settings.snapshot_interval
                if now >= next_beat:
                    out += b": heartbeat\n\n"
                    next_beat = now + settings.events_heartbeat
                if out:
                    await self.write(out)
        finally:
            closing.cancel()
            if getter is not None:
                getter.cancel()


async def events(request: web.Request) -> web.StreamResponse:
    streams = request.app[EVENT_STREAMS]
    flag = request.query.get("snapshot", "1").lower()
    if flag not in FLAGS:
        raise BadRequest("snapshot must be 1 or 0")
    after = streams.resume_after(request.headers.get("Last-Event-ID"))
    if len(streams.open) >= MAX_STREAMS:
        raise Unavailable(f"too many event streams are open ({MAX_STREAMS}); try again later")
    hub = services(request).events
    subscription = hub.subscribe()
    history = hub.recent()  # at once after subscribing: every later event reaches the queue, none falls between
    stream = EventStream(request, subscription, streams)
    streams.open.add(stream)
    try:
        return await stream.run(history, after, FLAGS[flag])
    finally:
        streams.open.discard(stream)
        hub.unsubscribe(subscription)


def add_routes(app: web.Application) -> None:
    app[EVENT_STREAMS] = streams = EventStreams()
    app[SNAPSHOTS] = Snapshots(app[SERVICES], app[RELOADER])
    app.on_shutdown.append(streams.on_shutdown)
    app.router.add_get("/router/events", events)
