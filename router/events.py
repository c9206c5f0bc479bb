"""The router's event stream: what happened to the fleet, newest last.

Fleet transitions (a container down, up, ejected, drained), requests that
a fallback model served or whose stream broke, cold loads, keep-warm reloads,
catalog and keys reloads and rate-limited keys are published here once, as
they happen. The hub keeps the last few hundred in memory (the console's
event list, `/router/status`) and hands each to every subscriber
(`/router/events`, server-sent events).

A subscriber never slows a publisher: each has a bounded queue, and when it
is full the event is dropped for that subscriber alone and counted, so the
subscriber can be told how many it missed. Publishing is synchronous and
cheap (a dict, a deque append, one `put_nowait` per subscriber).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

HISTORY = 500  # events kept for late subscribers and the status page
SUBSCRIBER_QUEUE = 256  # events a subscriber may fall behind before events are dropped for it


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    kind: str  # e.g. container_down, fallback_served: see the README's event table
    at: float  # epoch seconds
    fields: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "at": self.at, **self.fields}


@dataclass(eq=False, slots=True)
class Subscription:
    """One listener's queue; `dropped` counts events it missed since it last read."""

    queue: asyncio.Queue[Event] = field(default_factory=lambda: asyncio.Queue(SUBSCRIBER_QUEUE))
    dropped: int = 0

    def take_dropped(self) -> int:
        dropped, self.dropped = self.dropped, 0
        return dropped


class EventHub:
    def __init__(self, history: int = HISTORY) -> None:
        self._ids = itertools.count(1)
        self._recent: deque[Event] = deque(maxlen=history)
        self._subscribers: set[Subscription] = set()

    def publish(self, kind: str, **fields: Any) -> Event:
        event = Event(next(self._ids), kind, time.time(), fields)
        self._recent.append(event)
        for subscription in self._subscribers:
            try:
                subscription.queue.put_nowait(event)
            except asyncio.QueueFull:
                subscription.dropped += 1
        return event

    def recent(self, limit: int | None = None, *, after: int = 0) -> list[Event]:
        """The kept events with an id above `after`, oldest first (at most `limit`, the newest)."""
        events = [e for e in self._recent if e.id > after]
        return events[-limit:] if limit else events

    def subscribe(self) -> Subscription:
        subscription = Subscription()
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def __iter__(self) -> Iterator[Event]:
        return iter(self._recent)
