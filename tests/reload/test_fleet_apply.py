"""The fleet's side of a reload, without the network: which containers a new catalog
keeps (with their state), adds, and drains, and when a drained one may go."""

from __future__ import annotations

from router.catalog import Catalog, parse_catalog
from router.fleet.fleet import FailureKind, Fleet, FleetPolicy
from router.fleet.state import ContainerState, Phase
from tests.harness import fleet_of

MODEL = "llama3.2:3b"


def _catalog(containers: str, model_on: str) -> Catalog:
    text = f"version: 1\ncontainers:\n{containers}models:\n  {MODEL}: {{containers: [{model_on}]}}\n"
    return parse_catalog(text, "c.yaml").catalog


BEFORE = _catalog(
    "  a: {url: 'http://127.0.0.1:1'}\n  b: {url: 'http://127.0.0.1:2'}\n  c: {url: 'http://127.0.0.1:3'}\n", "a, b, c"
)
# a kept as it was; b's URL changed; c's limit changed; c2 new
AFTER = _catalog(
    "  a: {url: 'http://127.0.0.1:1'}\n  b: {url: 'http://127.0.0.1:20'}\n"
    "  c: {url: 'http://127.0.0.1:3', num_parallel: 2}\n  d: {url: 'http://127.0.0.1:4'}\n",
    "a, b, c, d",
)
POLICY = FleetPolicy()


def _up_fleet() -> tuple[Fleet, dict[str, ContainerState]]:
    fleet = fleet_of(BEFORE)
    for state in fleet.containers.values():
        fleet.probe_passed(state, version="0.33.0", loaded={}, tags=[])
    return fleet, dict(fleet.containers)


def test_unchanged_containers_keep_their_state_and_changed_ones_are_removed_then_added() -> None:
    fleet, old = _up_fleet()
    fleet.request_succeeded(old["a"])
    staged = fleet.stage(AFTER, POLICY)
    assert sorted(s.name for s in staged) == ["b", "c", "d"]
    assert all(s.phase is Phase.UNKNOWN and s.warm_first for s in staged)
    assert fleet.containers == old, "staging routes nothing to the new ones"

    reconciled = fleet.apply(AFTER, POLICY, staged)
    now = fleet.containers
    assert now["a"] is old["a"] and now["a"].served == 1 and now["a"].phase is Phase.UP
    assert [s.name for s in reconciled.added] == ["b", "c", "d"] and all(now[s.name] is s for s in reconciled.added)
    assert now["b"].url == "http://127.0.0.1:20" and now["c"].slots.limit == 2
    assert {s.name for s in reconciled.draining} == {"b", "c"}
    assert all(old[name].phase is Phase.DRAINING for name in ("b", "c"))


def test_a_draining_container_serves_the_catalogs_that_had_it_until_it_refuses() -> None:
    fleet, old = _up_fleet()
    fleet.apply(_catalog("  a: {url: 'http://127.0.0.1:1'}\n", "a"), POLICY)
    b = old["b"]
    assert b.phase is Phase.DRAINING and fleet.available(b) and fleet.takes_waiters(b)
    fleet.request_failed(b, "connection refused", FailureKind.REFUSED)
    assert b.phase is Phase.DRAINING and not fleet.available(b) and not fleet.takes_waiters(b)


def test_a_container_that_was_down_when_removed_takes_nothing() -> None:
    fleet, old = _up_fleet()
    fleet.probe_failed(old["b"], "refused")
    fleet.apply(_catalog("  a: {url: 'http://127.0.0.1:1'}\n", "a"), POLICY)
    assert not fleet.available(old["b"])


async def test_a_drained_container_goes_once_idle_and_no_request_may_still_pick_it() -> None:
    fleet, old = _up_fleet()
    b = old["b"]
    assert await b.slots.try_acquire("k")
    fleet.apply(_catalog("  a: {url: 'http://127.0.0.1:1'}\n", "a"), POLICY)
    assert [s.name for s in fleet.drained()] == ["c"]  # b: a request in flight
    b.slots.release("k")
    assert fleet.drained(keep={b}) == []  # a request of the old catalog may still pick it
    assert [s.name for s in fleet.drained()] == ["b"]
    assert sorted(s.name for s in fleet.all_states()) == ["a"]
