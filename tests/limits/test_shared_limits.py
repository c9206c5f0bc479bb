"""RedisLimits against a real redis-server: two instances stand for two router
processes (each its own process id and connections), sharing one prefix."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import pytest
import redis

from router.limits import LimitsUnavailable, QueueFull, QueueTimeout
from router.limits.redis import RedisContainerSlots, RedisLimits
from tests.limits.redis_server import RedisServer

T = TypeVar("T")
SETTLE = 5.0  # deadline for a condition that follows a release or a reconnect


@contextlib.asynccontextmanager
async def started(url: str, namespace: str, **options: Any) -> AsyncIterator[RedisLimits]:
    limits = RedisLimits(url, namespace=namespace, **options)
    await limits.start()
    try:
        yield limits
    finally:
        await limits.close()


async def within(awaitable: Awaitable[T], seconds: float = SETTLE) -> T:
    return await asyncio.wait_for(awaitable, seconds)


async def until(condition: Any, seconds: float = SETTLE) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def inspect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def queue_length(url: str, namespace: str) -> int:
    """Requests of every process waiting for container c, as Redis holds them."""
    return int(inspect(url).llen(f"{{{namespace}}}:queue:c"))


def slots_in_use(url: str, namespace: str) -> int:
    """Container c's slots held by every process, as Redis holds them."""
    return int(inspect(url).zcard(f"{{{namespace}}}:slots:c"))


async def queued_wait(slots: RedisContainerSlots, caller: str, url: str, namespace: str, position: int) -> asyncio.Task[None]:
    """`slots.wait(caller)` under way, once its ticket is `position`-th in Redis's queue."""
    task = asyncio.create_task(slots.wait(caller, 30))
    await until(lambda: queue_length(url, namespace) == position)
    return task


async def test_two_processes_together_hold_at_most_the_cap(redis_url: str, namespace: str) -> None:
    async with started(redis_url, namespace) as a, started(redis_url, namespace) as b:
        slots_a, slots_b = a.container_slots("c", 2, 8), b.container_slots("c", 2, 8)
        assert await slots_a.try_acquire("k")
        assert await slots_b.try_acquire("k")
        assert not await slots_a.try_acquire("k")
        assert not await slots_b.try_acquire("k")
        assert (slots_a.in_flight, slots_b.in_flight) == (1, 1)  # each process's own view
        assert slots_in_use(redis_url, namespace) == 2
        slots_b.release("k")  # sent with b's next batch, within a few milliseconds
        await until(lambda: slots_in_use(redis_url, namespace) == 1)
        assert await slots_a.try_acquire("k")
        assert slots_a.in_flight == 2


async def test_a_freed_slot_goes_to_the_oldest_waiter_whichever_process_queued_it(redis_url: str, namespace: str) -> None:
    async with started(redis_url, namespace) as a, started(redis_url, namespace) as b:
        slots_a, slots_b = a.container_slots("c", 1, 8), b.container_slots("c", 1, 8)
        assert await slots_a.try_acquire("k")
        first = await queued_wait(slots_b, "k", redis_url, namespace, 1)
        second = await queued_wait(slots_a, "k", redis_url, namespace, 2)
        assert not await slots_b.try_acquire("k")  # nobody passes those who wait
        slots_a.release("k")
        await within(first)
        assert not second.done()
        assert (slots_a.in_flight, slots_b.in_flight) == (0, 1)
        slots_b.release("k")
        await within(second)
        assert slots_a.in_flight == 1
        slots_a.release("k")


async def test_the_queue_bound_holds_for_all_processes_together(redis_url: str, namespace: str) -> None:
    async with started(redis_url, namespace) as a, started(redis_url, namespace) as b:
        slots_a, slots_b = a.container_slots("c", 1, 2), b.container_slots("c", 1, 2)
        assert await slots_a.try_acquire("k")
        waiting = [await queued_wait(slots_a, "k", redis_url, namespace, 1), await queued_wait(slots_b, "k", redis_url, namespace, 2)]
        assert slots_b.queue_open  # b alone has one waiter: only the shared count refuses
        with pytest.raises(QueueFull):
            await slots_b.wait("k", 30)
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        await until(lambda: queue_length(redis_url, namespace) == 0)


async def test_a_waiter_that_times_out_leaves_the_queue(redis_url: str, namespace: str) -> None:
    async with started(redis_url, namespace) as a, started(redis_url, namespace) as b:
        slots_a, slots_b = a.container_slots("c", 1, 8), b.container_slots("c", 1, 8)
        assert await slots_a.try_acquire("k")
        with pytest.raises(QueueTimeout):
            await slots_b.wait("k", 0.2)
        assert slots_b.queued == 0
        await until(lambda: queue_length(redis_url, namespace) == 0)
        slots_a.release("k")
        # the freed slot went to no ghost: it is free
        await until(lambda: slots_in_use(redis_url, namespace) == 0)
        assert await slots_b.try_acquire("k")
        slots_b.release("k")


async def test_a_slot_handed_to_a_process_goes_to_its_fairest_waiter(redis_url: str, namespace: str) -> None:
    async with started(redis_url, namespace) as a, started(redis_url, namespace) as b:
        slots_a, slots_b = a.container_slots("c", 2, 8), b.container_slots("c", 2, 8)
        assert await slots_a.try_acquire("busy")
        assert await slots_b.try_acquire("other")
        busy = await queued_wait(slots_a, "busy", redis_url, namespace, 1)  # queued first, but its key already holds a slot here
        quiet = await queued_wait(slots_a, "quiet", redis_url, namespace, 2)
        slots_b.release("other")
        await within(quiet)
        assert not busy.done()
        slots_a.release("quiet")
        await within(busy)
        slots_a.release("busy")
        slots_a.release("busy")


async def test_a_held_slot_is_renewed_past_its_lease_time(redis_url: str, namespace: str) -> None:
    async with started(redis_url, namespace, lease=1.0) as a, started(redis_url, namespace, lease=1.0) as b:
        slots_a, slots_b = a.container_slots("c", 1, 8), b.container_slots("c", 1, 8)
        assert await slots_a.try_acquire("k")
        await asyncio.sleep(2.5)  # a long stream: two and a half lease times
        assert not await slots_b.try_acquire("k")
        assert slots_in_use(redis_url, namespace) == 1
        slots_a.release("k")
        await until(lambda: slots_in_use(redis_url, namespace) == 0)


async def test_a_container_going_down_fails_its_waiters_and_frees_their_tickets(redis_url: str, namespace: str) -> None:
    async with started(redis_url, namespace) as a:
        slots = a.container_slots("c", 1, 8)
        assert await slots.try_acquire("k")
        waiter = await queued_wait(slots, "k", redis_url, namespace, 1)
        slots.fail_waiters(RuntimeError("container down"))
        with pytest.raises(RuntimeError, match="container down"):
            await within(waiter)
        await until(lambda: queue_length(redis_url, namespace) == 0)
        slots.release("k")


async def test_a_keys_rate_is_one_bucket_for_all_processes(redis_url: str, namespace: str) -> None:
    async with started(redis_url, namespace) as a, started(redis_url, namespace) as b:
        assert await a.take_token("team", 0.5, 3) == 0.0
        assert await b.take_token("team", 0.5, 3) == 0.0
        assert await a.take_token("team", 0.5, 3) == 0.0
        wait_b = await b.take_token("team", 0.5, 3)
        wait_a = await a.take_token("team", 0.5, 3)
        assert 0.0 < wait_b <= 2.0 and 0.0 < wait_a <= 2.0  # a token every 2 s, none left
        assert await b.take_token("other", 0.5, 3) == 0.0  # buckets are per key


async def test_a_keys_concurrency_is_counted_across_processes(redis_url: str, namespace: str) -> None:
    async with started(redis_url, namespace) as a, started(redis_url, namespace) as b:
        assert await a.acquire_key("team", 1)
        assert not await b.acquire_key("team", 1)
        assert (a.key_in_flight("team"), b.key_in_flight("team")) == (1, 0)
        a.release_key("team")
        await until(lambda: inspect(redis_url).zcard(f"{{{namespace}}}:conc:team") == 0)
        assert await b.acquire_key("team", 1)
        b.release_key("team")
        # no maximum, nothing shared to count: no round trip, no key in Redis
        assert await a.acquire_key("open", None)
        assert not inspect(redis_url).exists(f"{{{namespace}}}:conc:open")
        a.release_key("open")


async def test_fail_open_uses_local_limits_while_redis_is_lost_and_returns(private_redis: RedisServer, namespace: str) -> None:
    async with started(private_redis.url, namespace, failure="open") as a:
        slots = a.container_slots("c", 1, 8)
        assert await slots.try_acquire("k")
        waiter = asyncio.create_task(slots.wait("k", 30))
        await until(lambda: slots.queued == 1)
        private_redis.kill()
        await until(lambda: not a.health().shared)
        health = a.health()
        assert health.fallback and not health.unavailable and health.losses == 1 and health.last_error
        # the waiter went on waiting locally, where the slot it waited for is not held: it is served
        await within(waiter)
        assert not await slots.try_acquire("k")  # the local cap (1) now applies
        assert await a.take_token("team", 1.0, 1) == 0.0
        assert await a.acquire_key("team", 1)
        slots.release("k")  # the local one
        slots.release("k")  # the Redis lease: its release is dropped, the lease would expire
        a.release_key("team")
        private_redis.start()
        await until(lambda: a.health().shared, seconds=10)
        assert await slots.try_acquire("k")
        assert slots_in_use(private_redis.url, namespace) == 1  # back in Redis
        slots.release("k")


async def test_fail_closed_refuses_while_redis_is_lost(private_redis: RedisServer, namespace: str) -> None:
    async with started(private_redis.url, namespace, failure="closed") as a:
        slots = a.container_slots("c", 2, 8)
        assert await slots.try_acquire("k")
        private_redis.kill()
        await until(lambda: not a.health().shared)
        assert a.health().unavailable
        with pytest.raises(LimitsUnavailable):
            await slots.try_acquire("k")
        with pytest.raises(LimitsUnavailable):
            await a.take_token("team", 1.0, 5)
        with pytest.raises(LimitsUnavailable):
            await a.acquire_key("team", 3)
        assert await a.acquire_key("anyone", None)  # no limit to enforce: nothing to refuse
        a.release_key("anyone")
        slots.release("k")


async def test_a_router_started_before_redis_connects_when_it_comes(private_redis: RedisServer, namespace: str) -> None:
    private_redis.stop()
    async with started(private_redis.url, namespace) as a:
        assert a.health().fallback
        slots = a.container_slots("c", 1, 8)
        assert await slots.try_acquire("k")  # served meanwhile, on local limits
        slots.release("k")
        private_redis.start()
        await until(lambda: a.health().shared, seconds=10)
        assert await slots.try_acquire("k")
        assert slots_in_use(private_redis.url, namespace) == 1
        slots.release("k")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:s3cret@redis.internal:6380/2", "redis://redis.internal:6380/2"),
        ("rediss://:s3cret@[::1]:6379/0?ssl_cert_reqs=none", "rediss://[::1]:6379/0"),
        ("unix:///run/redis.sock?db=1&password=s3cret", "unix:///run/redis.sock"),
    ],
)
def test_the_store_is_shown_without_its_password(url: str, shown: str) -> None:
    limits = RedisLimits(url, namespace="shown")
    assert limits.health().target == shown


async def test_a_waiting_request_costs_redis_nothing_until_a_slot_frees(private_redis: RedisServer, namespace: str) -> None:
    lease = 30.0  # renewals every 10 s: none falls in the second watched
    async with started(private_redis.url, namespace, lease=lease) as a, started(private_redis.url, namespace, lease=lease) as b:
        slots_a, slots_b = a.container_slots("c", 1, 8), b.container_slots("c", 1, 8)
        assert await slots_a.try_acquire("k")
        waiter = await queued_wait(slots_b, "k", private_redis.url, namespace, 1)

        def scripts_run() -> int:
            return int(inspect(private_redis.url).info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))

        before = scripts_run()
        await asyncio.sleep(1.0)
        assert scripts_run() == before  # no polling: b waits in a blocking pop
        slots_a.release("k")
        await within(waiter)
        slots_b.release("k")


async def test_a_raised_limit_goes_to_those_already_waiting(redis_url: str, namespace: str) -> None:
    async with started(redis_url, namespace) as a, started(redis_url, namespace) as b:
        slots_a, slots_b = a.container_slots("c", 1, 8), b.container_slots("c", 1, 8)
        assert await slots_a.try_acquire("k")
        waiter = await queued_wait(slots_b, "k", redis_url, namespace, 1)
        slots_b.resize(2, 8)  # a catalog reload raised num_parallel
        await within(waiter)
        assert slots_in_use(redis_url, namespace) == 2
        slots_a.release("k")
        slots_b.release("k")
