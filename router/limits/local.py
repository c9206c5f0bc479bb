"""Limits held in this process: the default, and the fallback of a shared store.

Container slots queue fairly across API keys: when a slot frees, it goes to
the waiter whose key has the fewest requests in flight right now (running or
waiting, anywhere in the fleet; FIFO among equals), so one key's burst cannot
starve the others: a key that sends one request is served before a key whose
tenth is waiting.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from router.limits.base import LimitsHealth, QueueFull, QueueTimeout

LOCAL_HEALTH = LimitsHealth(store="local")


@dataclass(slots=True)
class TokenBucket:
    """`capacity` requests at once, refilled at `rate` per second."""

    rate: float
    capacity: int
    tokens: float = -1.0  # starts full
    updated: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = float(self.capacity)

    def take(self, now: float | None = None) -> float:
        """Take one token: 0.0 when granted, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        elapsed = now - self.updated
        if elapsed > 0:
            self.tokens = min(float(self.capacity), self.tokens + elapsed * self.rate)
            self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class Queued(Protocol):
    @property
    def seq(self) -> int: ...

    @property
    def caller(self) -> str: ...


W = TypeVar("W", bound=Queued)


def fairest(waiters: Sequence[W], held_by: Mapping[str, int]) -> W:
    """The waiter whose key holds the fewest slots now; the longest waiting among equals."""
    if len(waiters) == 1:
        return waiters[0]
    return min(waiters, key=lambda w: (held_by.get(w.caller, 0), w.seq))


@dataclass(slots=True, eq=False)
class _Waiter:
    seq: int
    caller: str
    future: asyncio.Future[None]


class LocalContainerSlots:
    __slots__ = ("_in_flight", "_outstanding", "_seq", "_waiters", "limit", "max_queue", "name")

    def __init__(self, name: str, limit: int, max_queue: int, outstanding: dict[str, int], seq: itertools.count[int]) -> None:
        self.name = name
        self.limit = limit
        self.max_queue = max_queue
        self._in_flight = 0
        self._waiters: list[_Waiter] = []
        self._outstanding = outstanding  # requests in flight per key, fleet-wide: the fairness measure
        self._seq = seq

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def queued(self) -> int:
        return len(self._waiters)

    @property
    def queue_open(self) -> bool:
        return len(self._waiters) < self.max_queue

    async def try_acquire(self, caller: str) -> bool:
        if self._in_flight < self.limit and not self._waiters:
            self._in_flight += 1
            return True
        return False

    async def wait(self, caller: str, timeout: float) -> None:
        if not self.queue_open:
            raise QueueFull(self.name)
        waiter = _Waiter(next(self._seq), caller, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout if timeout > 0 else None):
                await waiter.future
        except TimeoutError:
            self._abandon(waiter)
            raise QueueTimeout(self.name) from None
        except BaseException:
            self._abandon(waiter)
            raise

    def _abandon(self, waiter: _Waiter) -> None:
        future = waiter.future
        if future.done() and not future.cancelled() and future.exception() is None:
            self.release(waiter.caller)  # handed a slot, but will not use it
        elif waiter in self._waiters:
            self._waiters.remove(waiter)

    def release(self, caller: str) -> None:
        waiter = self._fairest()
        if waiter is None:
            self._in_flight -= 1
            return
        waiter.future.set_result(None)  # the slot passes to the waiter: in_flight unchanged

    def _fairest(self) -> _Waiter | None:
        waiters = self._waiters
        while waiters:
            best = fairest(waiters, self._outstanding)
            waiters.remove(best)
            if not best.future.done():
                return best
        return None

    def fail_waiters(self, exc: BaseException) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.future.done():
                waiter.future.set_exception(exc)

    def resize(self, limit: int, max_queue: int) -> None:
        grown = max(0, limit - self.limit)
        self.limit, self.max_queue = limit, max_queue
        for _ in range(grown):  # new room goes to those already waiting
            if self._in_flight >= self.limit:
                break
            waiter = self._fairest()
            if waiter is None:
                break
            self._in_flight += 1
            waiter.future.set_result(None)


class LocalLimits:
    def __init__(self) -> None:
        self._seq = itertools.count()
        self._in_flight_by_key: dict[str, int] = {}
        self._buckets: dict[str, TokenBucket] = {}

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def health(self) -> LimitsHealth:
        return LOCAL_HEALTH

    def container_slots(self, name: str, limit: int, max_queue: int) -> LocalContainerSlots:
        return LocalContainerSlots(name, limit, max_queue, self._in_flight_by_key, self._seq)

    async def acquire_key(self, key: str, max_concurrent: int | None) -> bool:
        current = self._in_flight_by_key.get(key, 0)
        if max_concurrent is not None and current >= max_concurrent:
            return False
        self._in_flight_by_key[key] = current + 1
        return True

    def release_key(self, key: str) -> None:
        current = self._in_flight_by_key.get(key, 0) - 1
        if current > 0:
            self._in_flight_by_key[key] = current
        else:
            self._in_flight_by_key.pop(key, None)

    def key_in_flight(self, key: str) -> int:
        return self._in_flight_by_key.get(key, 0)

    async def take_token(self, key: str, per_second: float, burst: int) -> float:
        bucket = self._buckets.get(key)
        if bucket is None or bucket.rate != per_second or bucket.capacity != burst:
            bucket = self._buckets[key] = TokenBucket(per_second, burst)  # new key, or its limit changed on reload
        return bucket.take()

    def forget_key(self, key: str) -> None:
        """A key that was revoked: its bucket goes (a new key of that name starts full)."""
        self._buckets.pop(key, None)
