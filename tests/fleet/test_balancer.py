"""The balancer's choice and queue, on real `ContainerState`s (no network)."""

from __future__ import annotations

import asyncio
import textwrap

import pytest

from router.catalog import Catalog, Model, parse_catalog
from router.fleet.balancer import Balancer, NoContainer, QueueFull, QueueTimeout
from router.fleet.state import DOWN, UP, ContainerGone, ContainerState, Fleet, LoadedModel

CATALOG = """
version: 1
containers:
  a: {gpus: [0], port: 11001, num_parallel: 2}
  b: {gpus: [1], port: 11002, num_parallel: 2}
  c: {gpus: [2], port: 11003, num_parallel: 2}
models:
  llama3.2:3b: {containers: [a, b, c]}
"""


def make_fleet(*, max_queue: int = 2, failure_threshold: int = 3) -> tuple[Fleet, Model]:
    catalog: Catalog = parse_catalog(textwrap.dedent(CATALOG), "unit.yaml").catalog
    fleet = Fleet.from_catalog(catalog, max_queue=max_queue, failure_threshold=failure_threshold)
    for state in fleet.containers.values():
        state.state = UP
    model = catalog.resolve("llama3.2:3b")
    assert model is not None
    return fleet, model


async def full_fleet(
    *, max_queue: int, queue_timeout: float, failure_threshold: int = 3
) -> tuple[Fleet, Model, Balancer]:
    """A fleet whose every slot (3 containers x num_parallel 2) is taken, and its balancer."""
    fleet, model = make_fleet(max_queue=max_queue, failure_threshold=failure_threshold)
    balancer = Balancer(fleet, queue_timeout=queue_timeout)
    for _ in range(6):
        await balancer.acquire(model, set())
    return fleet, model, balancer


def load(state: ContainerState, model: Model) -> None:
    state.loaded[model.key] = LoadedModel(name=model.tag, key=model.key, expires_at=None)


def names(states: list[ContainerState]) -> list[str]:
    return [s.name for s in states]


def test_catalog_order_breaks_ties_primary_first() -> None:
    fleet, model = make_fleet()
    assert names(Balancer(fleet, queue_timeout=1).candidates(model, set())) == ["a", "b", "c"]


def test_a_container_with_the_model_loaded_comes_first() -> None:
    fleet, model = make_fleet()
    load(fleet.containers["c"], model)
    assert names(Balancer(fleet, queue_timeout=1).candidates(model, set())) == ["c", "a", "b"]


def test_then_the_fewest_requests_in_flight() -> None:
    fleet, model = make_fleet()
    for state in fleet.containers.values():
        load(state, model)
    fleet.containers["a"].in_flight = 2
    fleet.containers["b"].in_flight = 1
    assert names(Balancer(fleet, queue_timeout=1).candidates(model, set())) == ["c", "b", "a"]


def test_loaded_beats_idle_unloaded() -> None:
    fleet, model = make_fleet()
    load(fleet.containers["b"], model)
    fleet.containers["b"].in_flight = 1
    assert names(Balancer(fleet, queue_timeout=1).candidates(model, set()))[0] == "b"


def test_down_and_already_tried_containers_are_skipped() -> None:
    fleet, model = make_fleet()
    fleet.containers["a"].state = DOWN
    assert names(Balancer(fleet, queue_timeout=1).candidates(model, {"b"})) == ["c"]


async def test_no_candidate_raises_no_container() -> None:
    fleet, model = make_fleet()
    for state in fleet.containers.values():
        state.state = DOWN
    with pytest.raises(NoContainer):
        await Balancer(fleet, queue_timeout=1).acquire(model, set())


async def test_in_flight_cap_is_num_parallel_then_siblings_fill() -> None:
    fleet, model = make_fleet()
    balancer = Balancer(fleet, queue_timeout=1)
    got = [await balancer.acquire(model, set()) for _ in range(6)]
    assert sorted(names(got)) == ["a", "a", "b", "b", "c", "c"]
    assert all(s.in_flight == s.limit == 2 for s in fleet.containers.values())


async def test_full_fleet_queues_fifo_and_release_hands_the_slot_over() -> None:
    fleet, model, balancer = await full_fleet(max_queue=2, queue_timeout=5)
    first = asyncio.create_task(balancer.acquire(model, set()))
    await asyncio.sleep(0)
    queued_on = next(s for s in fleet.containers.values() if s.waiters)
    second = asyncio.create_task(balancer.acquire(model, set()))
    await asyncio.sleep(0)
    assert sum(len(s.waiters) for s in fleet.containers.values()) == 2
    assert not first.done()
    queued_on.release()  # the slot passes to the oldest waiter of that container
    assert await first is queued_on
    assert queued_on.in_flight == 2  # handed over, not freed
    assert not second.done()
    second.cancel()
    await asyncio.gather(second, return_exceptions=True)
    assert sum(len(s.waiters) for s in fleet.containers.values()) == 0


async def test_every_queue_full_raises_queue_full_at_once() -> None:
    fleet, model, balancer = await full_fleet(max_queue=1, queue_timeout=5)
    waiting = [asyncio.create_task(balancer.acquire(model, set())) for _ in range(3)]
    await asyncio.sleep(0)
    assert all(len(s.waiters) == 1 for s in fleet.containers.values())  # shortest queue first
    with pytest.raises(QueueFull):
        await balancer.acquire(model, set())
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)


async def test_queue_timeout() -> None:
    fleet, model, balancer = await full_fleet(max_queue=4, queue_timeout=0.05)
    with pytest.raises(QueueTimeout):
        await balancer.acquire(model, set())
    assert all(not s.waiters for s in fleet.containers.values())
    assert all(s.in_flight == 2 for s in fleet.containers.values())


async def test_cancelled_waiter_that_was_handed_a_slot_gives_it_back() -> None:
    fleet, model, balancer = await full_fleet(max_queue=4, queue_timeout=5)
    task = asyncio.create_task(balancer.acquire(model, set()))
    await asyncio.sleep(0)
    state = next(s for s in fleet.containers.values() if s.waiters)
    state.release()  # hands the slot to the task...
    task.cancel()  # ...which leaves before it runs
    await asyncio.gather(task, return_exceptions=True)
    assert state.in_flight == 1 and not state.waiters


async def test_queued_requests_fail_over_when_their_container_goes_down() -> None:
    fleet, model, balancer = await full_fleet(max_queue=4, failure_threshold=1, queue_timeout=5)
    task = asyncio.create_task(balancer.acquire(model, set()))
    await asyncio.sleep(0)
    state = next(s for s in fleet.containers.values() if s.waiters)
    fleet.report_failure(state, "HTTP 500")
    with pytest.raises(ContainerGone):
        await task
    assert state.state == DOWN and state.wakeup.is_set()
    assert state.name not in names(balancer.candidates(model, set()))


def test_passive_failures_mark_down_after_the_threshold_or_at_once_when_fatal() -> None:
    fleet, model = make_fleet(failure_threshold=3)
    a, b = fleet.containers["a"], fleet.containers["b"]
    fleet.report_failure(a, "HTTP 500")
    fleet.report_failure(a, "HTTP 500")
    assert a.state == UP
    fleet.report_success(a)
    fleet.report_failure(a, "HTTP 500")
    fleet.report_failure(a, "HTTP 500")
    assert a.state == UP  # a success in between resets the count
    fleet.report_failure(a, "HTTP 500")
    assert a.state == DOWN and a.last_error == "HTTP 500"
    fleet.report_failure(b, "cannot connect", fatal=True)
    assert b.state == DOWN
    assert fleet.model_ready(model) == ["c"]
