"""The balancer's choice and queue, on real fleet states and local slots (no network)."""

from __future__ import annotations

import asyncio

import pytest

from router.fleet.balancer import Balancer, NoContainer
from router.fleet.fleet import FailureKind
from router.fleet.state import Phase
from router.limits import ContainerGone, QueueFull, QueueTimeout
from tests.fleet.states import TWO_MODELS, full_fleet, load, make_fleet, model_of, names, queued, take


def test_catalog_order_breaks_ties_primary_first() -> None:
    fleet, catalog = make_fleet()
    assert names(Balancer(fleet).candidates(model_of(catalog))) == ["a", "b", "c"]


def test_a_container_with_the_model_loaded_comes_first() -> None:
    fleet, catalog = make_fleet()
    model = model_of(catalog)
    load(fleet, fleet.containers["c"], model)
    assert names(Balancer(fleet).candidates(model)) == ["c", "a", "b"]


async def test_then_the_fewest_requests_in_flight() -> None:
    fleet, catalog = make_fleet()
    model = model_of(catalog)
    for state in fleet.containers.values():
        load(fleet, state, model)
    await take(fleet.containers["a"], 2)
    await take(fleet.containers["b"], 1)
    assert names(Balancer(fleet).candidates(model)) == ["c", "b", "a"]


async def test_loaded_beats_idle_unloaded() -> None:
    fleet, catalog = make_fleet()
    model = model_of(catalog)
    load(fleet, fleet.containers["b"], model)
    await take(fleet.containers["b"], 1)
    assert names(Balancer(fleet).candidates(model))[0] == "b"


def test_down_ejected_and_already_tried_containers_are_skipped() -> None:
    fleet, catalog = make_fleet()
    fleet.probe_failed(fleet.containers["a"], "refused")
    assert names(Balancer(fleet).candidates(model_of(catalog), {"b"})) == ["c"]
    fleet.eject(fleet.containers["c"], "cut streams")
    assert names(Balancer(fleet).candidates(model_of(catalog), {"b"})) == []


def test_only_the_models_own_containers_are_candidates_even_when_others_are_loaded_and_idle() -> None:
    fleet, catalog = make_fleet(TWO_MODELS)
    llama, qwen = model_of(catalog), model_of(catalog, "qwen2.5:7b")
    for name in ("q1", "q2"):
        load(fleet, fleet.containers[name], llama)  # a stray llama on qwen's containers
    assert names(Balancer(fleet).candidates(llama)) == ["l1", "l2"]
    assert names(Balancer(fleet).candidates(qwen)) == ["q1", "q2"]


async def test_a_busy_or_unloaded_right_container_still_beats_an_idle_wrong_one() -> None:
    fleet, catalog = make_fleet(TWO_MODELS)
    llama = model_of(catalog)
    balancer = Balancer(fleet)
    await take(fleet.containers["l1"], 2)
    await take(fleet.containers["l2"], 2)  # both of llama's containers full, qwen's idle
    with pytest.raises(QueueTimeout):
        await balancer.acquire(balancer.candidates(llama), "k", 0.01)
    assert fleet.containers["q1"].in_flight == fleet.containers["q2"].in_flight == 0
    fleet.probe_failed(fleet.containers["l1"], "refused")
    fleet.probe_failed(fleet.containers["l2"], "refused")
    assert balancer.candidates(llama) == []


async def test_no_candidate_raises_no_container() -> None:
    fleet, catalog = make_fleet()
    for state in fleet.containers.values():
        fleet.probe_failed(state, "refused")
    balancer = Balancer(fleet)
    with pytest.raises(NoContainer):
        await balancer.acquire(balancer.candidates(model_of(catalog)), "k", 1)


async def test_in_flight_cap_is_num_parallel_then_siblings_fill() -> None:
    fleet, catalog = make_fleet()
    model = model_of(catalog)
    balancer = Balancer(fleet)
    got = [await balancer.acquire(balancer.candidates(model), "k", 1) for _ in range(6)]
    assert sorted(names(got)) == ["a", "a", "b", "b", "c", "c"]
    assert all(s.in_flight == s.slots.limit == 2 for s in fleet.containers.values())


async def test_full_fleet_queues_and_release_hands_the_slot_over() -> None:
    fleet, model, balancer = await full_fleet(max_queue=2)
    first = asyncio.create_task(balancer.acquire(balancer.candidates(model), "k", 5))
    await asyncio.sleep(0)
    queued_on = next(s for s in fleet.containers.values() if s.slots.queued)
    second = asyncio.create_task(balancer.acquire(balancer.candidates(model), "k", 5))
    await asyncio.sleep(0)
    assert queued(fleet) == 2
    assert not first.done()
    queued_on.slots.release("k")  # the slot passes to the oldest waiter of that container
    assert await first is queued_on
    assert queued_on.in_flight == 2  # handed over, not freed
    assert not second.done()
    second.cancel()
    await asyncio.gather(second, return_exceptions=True)
    assert queued(fleet) == 0


async def test_a_freed_slot_goes_to_the_waiting_key_with_the_fewest_requests() -> None:
    fleet, catalog = make_fleet(max_queue=8)
    model = model_of(catalog)
    state = fleet.containers["a"]
    for _ in range(5):
        assert await fleet.limits.acquire_key("greedy", None)  # as the proxy counts each request
    assert await fleet.limits.acquire_key("polite", None)
    await take(state, 2, "greedy")  # one key holds the whole container
    greedy_waiting = [asyncio.create_task(state.slots.wait("greedy", 5)) for _ in range(3)]
    await asyncio.sleep(0)
    polite = asyncio.create_task(state.slots.wait("polite", 5))  # arrives last, holds nothing
    await asyncio.sleep(0)
    state.slots.release("greedy")
    fleet.limits.release_key("greedy")
    await asyncio.sleep(0)
    assert polite.done() and not any(t.done() for t in greedy_waiting)
    state.slots.release("greedy")
    await asyncio.sleep(0)
    assert greedy_waiting[0].done() and not greedy_waiting[1].done()  # FIFO among equals
    for task in greedy_waiting:
        task.cancel()
    await asyncio.gather(*greedy_waiting, return_exceptions=True)
    assert model is not None


async def test_every_queue_full_raises_queue_full_at_once() -> None:
    fleet, model, balancer = await full_fleet(max_queue=1)
    waiting = [asyncio.create_task(balancer.acquire(balancer.candidates(model), "k", 5)) for _ in range(3)]
    await asyncio.sleep(0)
    assert all(s.slots.queued == 1 for s in fleet.containers.values())  # shortest queue first
    with pytest.raises(QueueFull):
        await balancer.acquire(balancer.candidates(model), "k", 5)
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)


async def test_queue_timeout() -> None:
    fleet, model, balancer = await full_fleet(max_queue=4)
    with pytest.raises(QueueTimeout):
        await balancer.acquire(balancer.candidates(model), "k", 0.05)
    assert queued(fleet) == 0
    assert all(s.in_flight == 2 for s in fleet.containers.values())


async def test_cancelled_waiter_that_was_handed_a_slot_gives_it_back() -> None:
    fleet, model, balancer = await full_fleet(max_queue=4)
    task = asyncio.create_task(balancer.acquire(balancer.candidates(model), "k", 5))
    await asyncio.sleep(0)
    state = next(s for s in fleet.containers.values() if s.slots.queued)
    state.slots.release("k")  # hands the slot to the task...
    task.cancel()  # ...which leaves before it runs
    await asyncio.gather(task, return_exceptions=True)
    assert state.in_flight == 1 and not state.slots.queued


async def test_queued_requests_fail_over_when_their_container_is_ejected() -> None:
    fleet, model, balancer = await full_fleet(max_queue=4, failure_threshold=1)
    task = asyncio.create_task(balancer.acquire(balancer.candidates(model), "k", 5))
    await asyncio.sleep(0)
    state = next(s for s in fleet.containers.values() if s.slots.queued)
    fleet.request_failed(state, "stream cut", FailureKind.CONTAINER)
    with pytest.raises(ContainerGone):
        await task
    assert state.phase is Phase.EJECTED
    assert state.name not in names(balancer.candidates(model))


def test_a_refused_connection_marks_down_at_once_and_wakes_the_prober() -> None:
    fleet, catalog = make_fleet(failure_threshold=3)
    b = fleet.containers["b"]
    fleet.request_failed(b, "cannot connect", FailureKind.REFUSED)
    assert b.phase is Phase.DOWN and b.wakeup.is_set()
    assert "b" not in names(Balancer(fleet).candidates(model_of(catalog)))
