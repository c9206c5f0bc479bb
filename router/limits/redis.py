"""Limits held in Redis, shared by every router process that names the same
Redis and prefix: replicas behind a load balancer, `serve --workers` workers.

What is shared (exactly, whatever the number of processes):
- each container's in-flight cap (`num_parallel`): a slot is a lease in the
  container's ZSET, with a deadline the holder renews while its request runs
  (a stream of an hour included). A process that dies stops renewing, and
  its slots come free `redis_lease` after its last renewal;
- each container's queue (`max_queue` for all processes together, FIFO across
  them): a request that finds the container full queues a ticket; whoever
  frees a slot hands it to the oldest live ticket in the same script, and the
  waiting process hears of it by a blocking pop (`router.limits.store`);
- each API key's requests in flight (`max_concurrent`, leases like slots)
  and its token bucket (`rate_limit`).

What stays in each process: the order among its own waiters (fair across API
keys, as with local limits: a slot handed to this process goes to its waiter
whose key holds the fewest slots here), and `in_flight`/`queued`, which count
this process's own requests (read on every pick; never a round trip).

When Redis is lost: `failure="open"` (default) switches each process to its
own `LocalLimits` (with `share` > 1, the workers of one `serve`, each takes
its share, as without Redis) until Redis answers again; `"closed"` refuses
with `LimitsUnavailable` (503). Requests that started on either side end on
it. Each transition is logged once and counted (`health()`).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
from dataclasses import dataclass

import structlog

from router.limits.base import LimitsHealth, LimitsUnavailable, QueueFull, QueueTimeout
from router.limits.local import LocalContainerSlots, LocalLimits, fairest
from router.limits.lua import (
    ACQUIRE,
    CANCEL,
    ENQUEUE,
    GRANTED,
    HEARTBEAT,
    KEY_ACQUIRE,
    KEY_RELEASE,
    QUEUE_FULL,
    RELEASE,
    RENEW,
    SWEEP,
    TOKEN,
)
from router.limits.store import Op, RedisStore, StoreDown

log = structlog.get_logger("router.limits")

LOCAL = ""  # in a holder's list of leases: a slot (or key count) taken from the local fallback
FOREVER_MS = 86_400_000  # a queue's lifetime in Redis when requests may wait forever (queue_timeout 0)
SLOTS, CONCURRENCY = "slots", "conc"


def _push(held: dict[str, list[str]], name: str, lease: str) -> None:
    leases = held.get(name)
    if leases is None:
        held[name] = [lease]
    else:
        leases.append(lease)


def _pop(held: dict[str, list[str]], name: str) -> str:
    leases = held[name]
    lease = leases.pop()
    if not leases:
        del held[name]
    return lease


@dataclass(slots=True, eq=False)
class _Waiter:
    seq: int
    caller: str
    future: asyncio.Future[str]  # the lease this waiter is handed
    ticket: str
    queued: bool = False  # its ticket is in the container's queue in Redis


class RedisContainerSlots:
    __slots__ = ("_count", "_fallback", "_held", "_shared", "_waiters", "limit", "max_queue", "name")

    def __init__(self, name: str, limit: int, max_queue: int, shared: RedisLimits, fallback: LocalContainerSlots) -> None:
        self.name = name
        self.limit = limit
        self.max_queue = max_queue
        self._shared = shared
        self._fallback = fallback
        self._count = 0  # leases held in Redis by this process
        self._held: dict[str, list[str]] = {}  # caller -> its leases here (LOCAL: a fallback slot)
        self._waiters: list[_Waiter] = []

    @property
    def in_flight(self) -> int:
        return self._count + self._fallback.in_flight

    @property
    def queued(self) -> int:
        return len(self._waiters) + self._fallback.queued

    @property
    def queue_open(self) -> bool:
        return self.queued < self.max_queue

    async def try_acquire(self, caller: str) -> bool:
        shared = self._shared
        store = shared.store
        if store.up:
            if self._waiters:
                return False
            lease = shared.new_id()
            try:
                granted = await store.call((ACQUIRE, self.name, self.limit, lease), undo=(RELEASE, self.name, self.limit, lease))
            except StoreDown:
                pass
            else:
                if granted:
                    self._take(caller, lease)
                return granted == GRANTED
        shared.check_fallback()
        if await self._fallback.try_acquire(caller):
            _push(self._held, caller, LOCAL)
            return True
        return False

    async def wait(self, caller: str, timeout: float) -> None:
        shared = self._shared
        if not shared.store.up:
            return await self._wait_locally(caller, timeout)
        if not self.queue_open:
            raise QueueFull(self.name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout > 0 else None
        waiter = _Waiter(next(shared.seq), caller, loop.create_future(), shared.new_id())
        ttl = round((timeout + shared.lease) * 1000) if timeout > 0 else FOREVER_MS
        self._waiters.append(waiter)
        shared.tickets[waiter.ticket] = (self, waiter)
        try:
            async with asyncio.timeout_at(deadline):
                verdict = await shared.store.call((ENQUEUE, self.name, self.limit, self.max_queue, waiter.ticket, ttl))
                if verdict == QUEUE_FULL:
                    raise QueueFull(self.name)
                if verdict == GRANTED:
                    if not waiter.future.done():
                        waiter.future.set_result(waiter.ticket)
                else:
                    waiter.queued = True
                lease = await waiter.future
        except StoreDown:
            self._leave(waiter)
            remaining = max(0.001, deadline - loop.time()) if deadline is not None else 0.0
            return await self._wait_locally(caller, remaining)
        except TimeoutError:
            self._leave(waiter)
            raise QueueTimeout(self.name) from None
        except BaseException:
            self._leave(waiter)
            raise
        self._forget(waiter)
        self._take(caller, lease)

    async def _wait_locally(self, caller: str, timeout: float) -> None:
        self._shared.check_fallback()
        if not await self._fallback.try_acquire(caller):  # (a waiter moved here when Redis was lost may find room)
            await self._fallback.wait(caller, timeout)
        _push(self._held, caller, LOCAL)

    def granted(self, waiter: _Waiter, lease: str) -> None:
        """Redis handed `waiter`'s ticket a slot: it goes to the fairest waiter here (whose
        ticket, still queued, passes to `waiter`)."""
        if waiter.future.done():
            self._shared.release_slot(self.name, self.limit, lease)  # failed meanwhile (its container went down)
            return
        chosen = waiter
        if waiter.queued:
            chosen = fairest([w for w in self._waiters if w.queued and not w.future.done()], self._shared.held_by)
            if chosen is not waiter:
                waiter.ticket, chosen.ticket = chosen.ticket, lease
                self._shared.tickets[waiter.ticket] = (self, waiter)
        chosen.future.set_result(lease)

    def _forget(self, waiter: _Waiter) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)
        entry = self._shared.tickets.get(waiter.ticket)
        if entry is not None and entry[1] is waiter:
            del self._shared.tickets[waiter.ticket]

    def _leave(self, waiter: _Waiter) -> None:
        """A waiter gives up (timeout, cancelled, its container went down, Redis lost)."""
        self._forget(waiter)
        future = waiter.future
        if future.done() and not future.cancelled() and future.exception() is None:
            self._shared.release_slot(self.name, self.limit, future.result())  # handed a slot it will not use
        else:
            # queued, or granted a slot it has not heard of yet: both go
            self._shared.store.send((CANCEL, self.name, self.limit, waiter.ticket))
            if not future.done():
                future.cancel()

    def _take(self, caller: str, lease: str) -> None:
        self._count += 1
        self._shared.hold_lease(lease, SLOTS, self.name, caller)
        _push(self._held, caller, lease)

    def release(self, caller: str) -> None:
        lease = _pop(self._held, caller)
        if lease == LOCAL:
            self._fallback.release(caller)
            return
        self._count -= 1
        self._shared.drop_lease(lease, caller)
        self._shared.release_slot(self.name, self.limit, lease)

    def fail_waiters(self, exc: BaseException) -> None:
        for waiter in list(self._waiters):
            if not waiter.future.done():
                waiter.future.set_exception(exc)
        self._fallback.fail_waiters(exc)

    def resize(self, limit: int, max_queue: int) -> None:
        self.limit, self.max_queue = limit, max_queue
        self._shared.limit_of[self.name] = limit
        self._fallback.resize(self._shared.share_of(limit), max_queue)
        if self._waiters:
            self._shared.store.send((SWEEP, self.name, limit))  # a raised limit goes to those waiting

    def lost(self) -> None:
        """Redis was lost: waiters go on waiting locally (fail open) or are refused."""
        for waiter in list(self._waiters):
            if not waiter.future.done():
                waiter.future.set_exception(StoreDown("lost"))


class RedisLimits:
    def __init__(self, url: str, *, namespace: str = "ollama-router", lease: float = 10.0, failure: str = "open", share: int = 1) -> None:
        self.process = os.urandom(8).hex()  # made in the process that serves (after a fork)
        self.lease = lease
        self.fail_open = failure == "open"
        self.failure = failure
        self.share = max(1, share)
        self.fallback = LocalLimits()
        self.store = RedisStore(url, namespace, self.process, lease, self)
        self.seq = itertools.count()
        self.held_by: dict[str, int] = {}  # slots held per key, over every container: the fairness measure here
        self.tickets: dict[str, tuple[RedisContainerSlots, _Waiter]] = {}
        self.limit_of: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._leases: dict[str, tuple[str, str]] = {}  # lease held in Redis -> (kind, container or key name)
        self._key_leases: dict[str, list[str]] = {}

    def new_id(self) -> str:
        return f"{self.process}:{next(self._ids)}"

    def share_of(self, limit: int) -> int:
        """This process's part of a limit when each process keeps its own (the fallback)."""
        return max(1, math.ceil(limit / self.share))

    # lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.start()

    async def close(self) -> None:
        farewell: list[Op] = []
        for lease, (kind, name) in self._leases.items():
            farewell.append((RELEASE, name, self.limit_of.get(name, 0), lease) if kind == SLOTS else (KEY_RELEASE, name, lease))
        farewell += [(CANCEL, slots.name, slots.limit, ticket) for ticket, (slots, _) in self.tickets.items()]
        await self.store.close(farewell)

    def health(self) -> LimitsHealth:
        store = self.store
        return LimitsHealth(
            store="redis",
            shared=store.up,
            target=store.target,
            failure_mode=self.failure,
            since=store.since,
            losses=store.losses,
            last_error=store.last_error,
        )

    def check_fallback(self) -> None:
        """Redis is lost: local limits in its place, or a refusal when failing closed."""
        if not self.fail_open:
            raise LimitsUnavailable(f"the shared limits store ({self.store.target}) is unreachable: {self.store.last_error}")

    # store events -------------------------------------------------------------------------

    def granted(self, ticket: str, container: str) -> None:
        entry = self.tickets.pop(ticket, None)
        if entry is None:  # its waiter left before the grant came: pass the slot on
            self.release_slot(container, self.limit_of.get(container, 0), ticket)
            return
        slots, waiter = entry
        slots.granted(waiter, ticket)

    def lost(self, error: str) -> None:
        if self.fail_open:
            log.warning("limits_store_lost", target=self.store.target, error=error, fallback="local limits in each process")
        else:
            log.error("limits_store_lost", target=self.store.target, error=error, fallback="none: requests get 503")
        for slots in {slots for slots, _ in self.tickets.values()}:
            slots.lost()

    def found(self) -> None:
        log.info("limits_store_found", target=self.store.target, leases=len(self._leases))
        for op in self.renewals():  # leases held through the outage count again at once
            self.store.send(op)

    def renewals(self) -> list[Op]:
        ops: list[Op] = [(HEARTBEAT,)]
        ops += [(RENEW, f"{kind}:{name}", lease) for lease, (kind, name) in self._leases.items()]
        ops += [(SWEEP, slots.name, slots.limit) for slots in {slots for slots, _ in self.tickets.values()}]
        return ops

    # leases --------------------------------------------------------------------------------

    def hold_lease(self, lease: str, kind: str, name: str, caller: str) -> None:
        self._leases[lease] = (kind, name)
        if kind == SLOTS:
            self.held_by[caller] = self.held_by.get(caller, 0) + 1

    def drop_lease(self, lease: str, caller: str) -> None:
        kind, _ = self._leases.pop(lease)
        if kind == SLOTS:
            held = self.held_by.get(caller, 0) - 1
            if held > 0:
                self.held_by[caller] = held
            else:
                self.held_by.pop(caller, None)

    def release_slot(self, name: str, limit: int, lease: str) -> None:
        self.store.send((RELEASE, name, limit, lease))

    # the Limits interface ---------------------------------------------------------------------

    def container_slots(self, name: str, limit: int, max_queue: int) -> RedisContainerSlots:
        self.limit_of[name] = limit
        fallback = self.fallback.container_slots(name, self.share_of(limit), max_queue)
        return RedisContainerSlots(name, limit, max_queue, self, fallback)

    async def acquire_key(self, key: str, max_concurrent: int | None) -> bool:
        store = self.store
        if max_concurrent is not None and store.up:
            lease = self.new_id()
            try:
                granted = await store.call((KEY_ACQUIRE, key, max_concurrent, lease), undo=(KEY_RELEASE, key, lease))
            except StoreDown:
                pass
            else:
                if granted:
                    self.hold_lease(lease, CONCURRENCY, key, key)
                    _push(self._key_leases, key, lease)
                return granted == GRANTED
        if max_concurrent is not None:
            self.check_fallback()
        if await self.fallback.acquire_key(key, self.share_of(max_concurrent) if max_concurrent is not None else None):
            _push(self._key_leases, key, LOCAL)
            return True
        return False

    def release_key(self, key: str) -> None:
        lease = _pop(self._key_leases, key)
        if lease == LOCAL:
            self.fallback.release_key(key)
            return
        self.drop_lease(lease, key)
        self.store.send((KEY_RELEASE, key, lease))

    def key_in_flight(self, key: str) -> int:
        return len(self._key_leases.get(key, ()))

    async def take_token(self, key: str, per_second: float, burst: int) -> float:
        if self.store.up:
            try:
                wait_us = await self.store.call((TOKEN, key, per_second, burst))
            except StoreDown:
                pass
            else:
                return wait_us / 1e6
        self.check_fallback()
        return await self.fallback.take_token(key, per_second / self.share, self.share_of(burst))

