"""The routing policies on real fleet states and local slots (no network): the order
each gives a model's containers, and what affinity remembers."""

from __future__ import annotations

import asyncio

import pytest

from router.catalog import Model, Routing
from router.fleet.balancer import Balancer
from router.fleet.fleet import Fleet
from router.fleet.routing import Policies
from router.fleet.state import ContainerState
from tests.fleet.states import TWO_MODELS, load, make_fleet, model_of, names, take

CONVERSATION = 0x5EED


def affinity_fleet(
    text: str | None = None, *, max_keys: int = 1024, max_queue: int = 0
) -> tuple[Fleet, Model, Balancer]:
    """Three containers (num_parallel 2) of one model, loaded everywhere, placed by affinity."""
    fleet, catalog = make_fleet(text) if text is not None else make_fleet()
    model = model_of(catalog)
    assert model.routing is Routing.AFFINITY  # the default for a model with siblings
    for state in fleet.containers.values():
        load(fleet, state, model)
    return fleet, model, Balancer(fleet, Policies(affinity_max_keys=max_keys, affinity_max_queue=max_queue))


async def place(balancer: Balancer, model: Model, key: int | None, exclude: frozenset[str] = frozenset()) -> ContainerState:
    """What the proxy does for one request: order, take a slot, tell the policy."""
    offered = balancer.candidates(model, exclude, key=key)
    state = await balancer.acquire(offered, "k", 1)
    balancer.placed(model, key, state, offered)
    return state


def counts(balancer: Balancer, model: Model) -> dict[str, int]:
    return balancer.policies.affinity.counts[model.key].as_dict()


async def test_a_conversation_returns_to_its_container_even_when_a_sibling_is_idler() -> None:
    _fleet, model, balancer = affinity_fleet()
    home = await place(balancer, model, CONVERSATION)
    assert home.in_flight == 1  # its first turn still runs: every sibling is idler
    for _ in range(5):
        home.slots.release("k")
        await take(home, 1, "other")  # another request holds a slot of it
        assert await place(balancer, model, CONVERSATION) is home
        home.slots.release("other")
    assert counts(balancer, model) == {"hit": 5, "miss": 1, "spillover": 0, "failover": 0}


async def test_new_conversations_go_to_the_least_loaded_container() -> None:
    fleet, model, balancer = affinity_fleet()
    await take(fleet.containers["a"], 1)
    await take(fleet.containers["c"], 1)
    assert (await place(balancer, model, 1)).name == "b"
    assert (await place(balancer, model, 2)).name in {"a", "c"}


def test_new_conversations_on_an_idle_fleet_spread_over_it_the_same_way_in_every_router_process() -> None:
    fleet, model, balancer = affinity_fleet()
    firsts = [balancer.candidates(model, key=key)[0].name for key in range(300)]
    assert set(firsts) == {"a", "b", "c"}
    assert min(firsts.count(name) for name in "abc") > 50  # roughly a third each, not all on the primary
    # a second router (a worker of `serve --workers`) knows nothing of the first but chooses alike
    other = Balancer(fleet, Policies())
    assert [other.candidates(model, key=key)[0].name for key in range(300)] == firsts


async def test_a_full_container_spills_to_a_sibling_with_a_free_slot_which_keeps_the_conversation() -> None:
    _fleet, model, balancer = affinity_fleet()
    home = await place(balancer, model, CONVERSATION)
    home.slots.release("k")
    await take(home, 2, "other")  # at num_parallel: its slots serve other conversations now
    moved = await place(balancer, model, CONVERSATION)
    assert moved is not home
    assert counts(balancer, model)["spillover"] == 1
    moved.slots.release("k")
    for _ in range(2):
        home.slots.release("other")  # the old container is idle again: the conversation stays moved
    assert await place(balancer, model, CONVERSATION) is moved
    assert counts(balancer, model) == {"hit": 1, "miss": 1, "spillover": 1, "failover": 0}


async def test_a_full_container_keeps_its_conversation_when_every_sibling_is_full_too() -> None:
    fleet, model, balancer = affinity_fleet()
    home = await place(balancer, model, CONVERSATION)
    await take(home, 1, "other")
    for state in fleet.containers.values():
        if state is not home:
            await take(state, 2, "other")
    assert balancer.candidates(model, key=CONVERSATION)[0] is home  # nowhere better: it waits for its own


async def test_a_queue_longer_than_the_setting_spills() -> None:
    fleet, model, balancer = affinity_fleet(max_queue=1)
    home = await place(balancer, model, CONVERSATION)
    await take(home, 1, "other")
    for state in fleet.containers.values():
        if state is not home:
            await take(state, 2, "other")
    waiting = [asyncio.create_task(home.slots.wait("other", 5)) for _ in range(2)]
    await asyncio.sleep(0)
    assert home.slots.queued == 1 + 1
    assert balancer.candidates(model, key=CONVERSATION)[0] is not home  # two waiting: more than 1
    waiting[0].cancel()
    await asyncio.gather(waiting[0], return_exceptions=True)
    assert balancer.candidates(model, key=CONVERSATION)[0] is home  # one waiting is within the bound
    waiting[1].cancel()
    await asyncio.gather(waiting[1], return_exceptions=True)


@pytest.mark.parametrize("how", ["down", "ejected"])
async def test_when_its_container_is_gone_the_conversation_fails_over_and_stays_moved(how: str) -> None:
    fleet, model, balancer = affinity_fleet()
    home = await place(balancer, model, CONVERSATION)
    home.slots.release("k")
    if how == "down":
        fleet.probe_failed(home, "connection refused")
    else:
        fleet.eject(home, "cut streams")
    moved = await place(balancer, model, CONVERSATION)
    assert moved is not home
    moved.slots.release("k")
    fleet.probe_passed(home, version="0.32.15", loaded=dict(home.loaded), tags=[])  # back, idle
    if how == "ejected":
        fleet.deep_check_passed(home)
    assert home.routable and home.in_flight == 0
    assert await place(balancer, model, CONVERSATION) is moved
    assert counts(balancer, model) == {"hit": 1, "miss": 1, "spillover": 0, "failover": 1}


async def test_a_retry_after_a_failure_on_its_container_moves_the_conversation() -> None:
    _fleet, model, balancer = affinity_fleet()
    home = await place(balancer, model, CONVERSATION)
    home.slots.release("k")
    # the proxy's next attempt excludes the container that just failed
    moved = await place(balancer, model, CONVERSATION, exclude=frozenset({home.name}))
    assert moved is not home
    moved.slots.release("k")
    assert await place(balancer, model, CONVERSATION) is moved
    assert counts(balancer, model)["failover"] == 1


async def test_a_container_on_probation_or_without_the_model_gives_way_to_a_sibling() -> None:
    fleet, model, balancer = affinity_fleet()
    home = await place(balancer, model, CONVERSATION)
    home.slots.release("k")
    home.loaded.clear()  # its /api/ps no longer lists the model (unloaded): a sibling holds it warm
    assert balancer.candidates(model, key=CONVERSATION)[0] is not home
    load(fleet, home, model)
    fleet.eject(home, "cut streams")
    assert home.ejection is not None
    home.ejection.until = 0.0  # its time is up: probation, one request at a time
    offered = balancer.candidates(model, key=CONVERSATION)
    assert home in offered and offered[-1] is home  # healthy before probation


def test_the_table_is_an_lru_bounded_by_the_setting() -> None:
    fleet, model, balancer = affinity_fleet(max_keys=3)
    affinity = balancer.policies.affinity
    a, b = fleet.containers["a"], fleet.containers["b"]
    for key in range(10):
        balancer.placed(model, key, a, [a, b])
    assert len(affinity.homes) == 3
    assert counts(balancer, model)["miss"] == 10
    balancer.placed(model, 7, a, [a, b])  # used again: now the most recent
    balancer.placed(model, 10, a, [a, b])  # a new one pushes out the least recently used (8)
    assert {key for _, key in affinity.homes} == {9, 7, 10}
    balancer.placed(model, 8, b, [a, b])
    assert counts(balancer, model) == {"hit": 0, "miss": 13, "spillover": 0, "failover": 0}  # 8 forgotten: a miss
    affinity.configure(max_keys=1, max_queue=0)  # a reload that shrinks it
    assert list(affinity.homes) == [(model.key, 8)]


async def served_and_done(balancer: Balancer, model: Model, key: int | None, state: ContainerState, weight: int = 1000) -> None:
    """One request of `key` (a body of `weight` bytes) placed on `state` and finished."""
    await take(state, 1, "turn")
    balancer.placed(model, key, state, [state], weight)
    state.slots.release("turn")
    balancer.released(model, key, state)


async def test_a_conversation_whose_prompt_its_container_served_over_is_placed_anew() -> None:
    fleet, model, balancer = affinity_fleet()
    a = fleet.containers["a"]
    await served_and_done(balancer, model, CONVERSATION, a)
    await served_and_done(balancer, model, 1, a)
    assert balancer.candidates(model, key=CONVERSATION)[0] is a  # one other since: its slot still holds it
    await served_and_done(balancer, model, None, a)  # a request without a key takes a slot all the same
    # a's two slots (num_parallel 2) now hold conversation 1 and that request: nothing to go back for
    assert balancer.candidates(model, key=CONVERSATION)[0] is not a
    assert (await place(balancer, model, CONVERSATION)) is not a
    assert counts(balancer, model) == {"hit": 0, "miss": 3, "spillover": 0, "failover": 0}


async def test_a_slot_still_busy_is_not_the_one_the_next_conversation_takes() -> None:
    fleet, model, balancer = affinity_fleet()
    a = fleet.containers["a"]
    await take(a, 1, "long")
    balancer.placed(model, 1, a, [a], 1000)  # conversation 1: a long answer, still streaming
    await served_and_done(balancer, model, 2, a)  # 2 came and went meanwhile
    await served_and_done(balancer, model, 3, a)  # 3 takes a's free slot: 2's, though 1 started first
    a.slots.release("long")
    balancer.released(model, 1, a)
    assert balancer.candidates(model, key=1)[0] is a  # 1's prompt is still there: its next turn goes back
    assert balancer.candidates(model, key=3)[0] is a
    assert balancer.candidates(model, key=2)[0] is not a  # 2's is gone: placed anew


async def test_new_conversations_push_out_the_conversation_served_longest_ago_not_a_live_one() -> None:
    fleet, model, balancer = affinity_fleet()
    a, b, c = (fleet.containers[name] for name in "abc")
    for key, state in ((1, a), (2, a), (3, b), (4, b), (5, c), (6, c)):
        await served_and_done(balancer, model, key, state)  # every slot of the fleet holds a conversation
    for key, state in ((1, a), (2, a), (3, b), (5, c), (6, c)):  # all but 4 go on: each a hit
        await served_and_done(balancer, model, key, state)
    await take(b, 1, "other")  # b is the busier one, yet its least recent conversation is the oldest
    assert balancer.candidates(model, key=7)[0] is b
    await served_and_done(balancer, model, 7, b)
    for key, state in ((1, a), (2, a), (3, b), (5, c), (6, c), (7, b)):  # the live ones all still hold
        assert balancer.candidates(model, key=key)[0] is state
    assert counts(balancer, model) == {"hit": 5, "miss": 7, "spillover": 0, "failover": 0}


async def test_a_new_conversation_pushes_out_a_short_prompt_before_a_long_one_served_a_little_earlier() -> None:
    fleet, model, balancer = affinity_fleet()
    a, b, c = (fleet.containers[name] for name in "abc")
    await served_and_done(balancer, model, 1, a, weight=50_000)  # an agent's long conversation
    for key, state in ((2, a), (3, b), (4, b), (5, c), (6, c)):
        await served_and_done(balancer, model, key, state, weight=1000)
    assert names(balancer.candidates(model, key=7)) == ["b", "c", "a"]  # 3 (the oldest short one), 5, then 1


async def test_a_container_with_a_free_slot_takes_a_new_conversation_before_a_full_one() -> None:
    fleet, model, balancer = affinity_fleet()
    a, b, c = (fleet.containers[name] for name in "abc")
    for key, state in ((1, b), (2, b), (3, c), (4, c)):
        await served_and_done(balancer, model, key, state)
    await take(a, 2, "other")  # a holds nothing worth keeping, but every slot of it is busy
    assert names(balancer.candidates(model, key=5)) in (["b", "c", "a"], ["c", "b", "a"])


def test_conversations_are_remembered_per_model_on_the_models_own_containers() -> None:
    fleet, catalog = make_fleet(TWO_MODELS)
    llama, qwen = model_of(catalog), model_of(catalog, "qwen2.5:7b")
    balancer = Balancer(fleet)
    balancer.placed(llama, CONVERSATION, fleet.containers["l2"], [fleet.containers["l1"], fleet.containers["l2"]])
    assert names(balancer.candidates(qwen, key=CONVERSATION)) in (["q1", "q2"], ["q2", "q1"])
    assert balancer.candidates(llama, key=CONVERSATION)[0].name == "l2"


def test_without_a_key_affinity_orders_by_load() -> None:
    fleet, model, balancer = affinity_fleet()
    load(fleet, fleet.containers["c"], model)
    fleet.containers["a"].loaded.clear()
    assert names(balancer.candidates(model)) == ["b", "c", "a"]


ROUND_ROBIN = TWO_MODELS.replace("{containers: [l1, l2]}", "{containers: [l1, l2], routing: round_robin}").replace(
    "l2: {gpus: [1], port: 11002, num_parallel: 2}", "l2: {gpus: [1], port: 11002, num_parallel: 2}\n  l3: {gpus: [4], port: 11005, num_parallel: 2}"
).replace("[l1, l2]", "[l1, l2, l3]")


async def test_round_robin_cycles_the_available_containers_whatever_their_load() -> None:
    fleet, catalog = make_fleet(ROUND_ROBIN)
    model = model_of(catalog)
    assert model.routing is Routing.ROUND_ROBIN
    balancer = Balancer(fleet)
    await take(fleet.containers["l1"], 1)  # load does not matter to it
    assert [balancer.candidates(model)[0].name for _ in range(6)] == ["l1", "l2", "l3", "l1", "l2", "l3"]
    fleet.probe_failed(fleet.containers["l2"], "refused")
    assert [balancer.candidates(model)[0].name for _ in range(4)] == ["l1", "l3", "l1", "l3"]


async def test_round_robin_puts_a_container_on_probation_last() -> None:
    fleet, catalog = make_fleet(ROUND_ROBIN)
    model = model_of(catalog)
    balancer = Balancer(fleet)
    l1 = fleet.containers["l1"]
    fleet.eject(l1, "cut streams")
    assert l1.ejection is not None
    l1.ejection.until = 0.0
    for _ in range(3):
        offered = balancer.candidates(model)
        assert offered[-1] is l1 and len(offered) == 3


def test_a_model_with_one_container_is_not_keyed_and_has_nothing_to_order() -> None:
    fleet, catalog = make_fleet("""
version: 1
containers:
  a: {gpus: [0], port: 11001}
models:
  llama3.2:3b: {containers: [a]}
  qwen2.5:7b: {containers: [a], routing: affinity}
""")
    for tag in ("llama3.2:3b", "qwen2.5:7b"):
        model = model_of(catalog, tag)
        assert not model.keyed
        assert names(Balancer(fleet).candidates(model, key=CONVERSATION)) == ["a"]
    assert model_of(catalog).routing is Routing.LEAST_LOADED
