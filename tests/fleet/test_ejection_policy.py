"""Outlier ejection as the fleet's transitions decide it, on real fleet states (no network).

Requests' outcomes eject a container whatever its probes say; the ejection
doubles each time up to a cap; when it is over the container takes one
request at a time (probation) until one succeeds. Every ejection is logged.
"""

from __future__ import annotations

import time

import pytest
import structlog

from router.catalog import Catalog, Model, parse_catalog
from router.fleet.balancer import Balancer
from router.fleet.fleet import FailureKind, Fleet
from router.fleet.state import ContainerState, Phase
from router.limits import QueueTimeout
from tests.harness import catalog_yaml, fleet_of

CATALOG = catalog_yaml(
    "a", "b", "solo", models={"llama3.2:3b": "containers: [a, b]", "qwen2.5:7b": "containers: [solo]"},
    container_extra="num_parallel: 2",
)
PROBE = {"version": "0.32.15", "loaded": {}, "tags": []}


def make_fleet(**policy: float) -> tuple[Fleet, Catalog]:
    catalog: Catalog = parse_catalog(CATALOG, "unit.yaml").catalog
    fleet = fleet_of(catalog, **{"failure_threshold": 3, "base_ejection_time": 5.0, "max_ejection_time": 300.0, **policy})
    for state in fleet.containers.values():
        fleet.probe_passed(state, **PROBE)  # type: ignore[arg-type]
    return fleet, catalog


def llama(catalog: Catalog) -> Model:
    model = catalog.resolve("llama3.2:3b")
    assert model is not None
    return model


def fail(fleet: Fleet, state: ContainerState, times: int, kind: FailureKind = FailureKind.CONTAINER) -> None:
    for _ in range(times):
        fleet.request_failed(state, "stream cut", kind)


def ejected_for(state: ContainerState) -> float:
    assert state.ejection is not None
    return state.ejection.until - time.time()


def run_out(state: ContainerState) -> None:
    """The clock passes the end of the container's ejection (nothing of the fleet's is told)."""
    assert state.ejection is not None
    state.ejection.until = time.time() - 0.001


def after_ejection(fleet: Fleet, state: ContainerState) -> None:
    """Time passes until the ejection is over: the next look at the container finds it on probation."""
    assert state.ejection is not None
    assert fleet.available(state, now=state.ejection.until + 0.001)


def test_failures_in_a_row_eject_even_with_good_probes_in_between() -> None:
    fleet, _ = make_fleet()
    a = fleet.containers["a"]
    fail(fleet, a, 2)
    fleet.probe_passed(a, **PROBE)  # type: ignore[arg-type]  # probes pass: they say nothing of its generations
    assert a.phase is Phase.UP
    fail(fleet, a, 1)
    assert a.phase is Phase.EJECTED
    fleet.probe_passed(a, **PROBE)  # type: ignore[arg-type]
    assert a.phase is Phase.EJECTED  # still out, whatever the probes say
    assert 4.0 < ejected_for(a) <= 5.0


def test_a_success_between_failures_starts_the_count_again() -> None:
    fleet, _ = make_fleet()
    a = fleet.containers["a"]
    fail(fleet, a, 2)
    fleet.request_succeeded(a)
    fail(fleet, a, 2)
    assert a.phase is Phase.UP


def test_each_ejection_in_a_row_lasts_twice_as_long_up_to_the_cap() -> None:
    fleet, _ = make_fleet(base_ejection_time=5.0, max_ejection_time=30.0)
    a = fleet.containers["a"]
    seen = []
    for _ in range(5):
        fail(fleet, a, 3 if a.phase is Phase.UP else 1)  # on probation, one failure is enough
        assert a.phase is Phase.EJECTED
        seen.append(round(ejected_for(a)))
        after_ejection(fleet, a)
        assert a.phase is Phase.PROBATION
    assert seen == [5, 10, 20, 30, 30]
    assert a.ejected_total == 5


def test_healthy_containers_come_first_probation_last() -> None:
    fleet, catalog = make_fleet()
    a = fleet.containers["a"]
    model = llama(catalog)
    fail(fleet, a, 3)
    balancer = Balancer(fleet)
    assert [s.name for s in balancer.candidates(model)] == ["b"]
    after_ejection(fleet, a)
    assert [s.name for s in balancer.candidates(model)] == ["b", "a"]  # a has fewer in flight, yet comes last


async def test_probation_offers_its_one_slot_once() -> None:
    fleet, catalog = make_fleet()
    a, b = fleet.containers["a"], fleet.containers["b"]
    model = llama(catalog)
    balancer = Balancer(fleet)
    fail(fleet, a, 3)
    after_ejection(fleet, a)
    for _ in range(2):  # b full
        assert await b.slots.try_acquire("k")
    assert await balancer.acquire(balancer.candidates(model), "k", 1) is a
    assert [s.name for s in balancer.candidates(model)] == ["b"]  # a holds its one probation request
    stale = [b, a]  # a plan made before a took its request offers it no second one
    with pytest.raises(QueueTimeout):  # waited in b's queue instead
        await balancer.acquire(stale, "k", 0.01)
    assert a.in_flight == 1
    a.slots.release("k")
    fleet.request_succeeded(a)
    assert a.phase is Phase.UP and a.ejection is None
    assert [s.name for s in balancer.candidates(model)] == ["a", "b"]  # fewest in flight again


def test_a_failure_on_probation_ejects_again_for_longer() -> None:
    fleet, _ = make_fleet()
    a = fleet.containers["a"]
    fail(fleet, a, 3)
    after_ejection(fleet, a)
    fail(fleet, a, 1)
    assert a.phase is Phase.EJECTED
    assert 9.0 < ejected_for(a) <= 10.0


def test_late_failures_of_requests_started_before_the_ejection_do_not_eject_it_again() -> None:
    fleet, _ = make_fleet()
    a = fleet.containers["a"]
    fail(fleet, a, 3)
    fail(fleet, a, 5)  # the streams that were in flight when it was ejected break too
    assert a.phase is Phase.EJECTED and a.ejected_total == 1
    assert 4.0 < ejected_for(a) <= 5.0


def test_an_ambiguous_failure_never_ejects_the_last_container_of_a_model() -> None:
    fleet, _ = make_fleet()
    solo, a, b = fleet.containers["solo"], fleet.containers["a"], fleet.containers["b"]
    fail(fleet, solo, 10, FailureKind.AMBIGUOUS)  # an HTTP 500 may be the request's own fault
    assert solo.phase is Phase.UP
    fail(fleet, solo, 3, FailureKind.CONTAINER)  # a cut stream is the container's
    assert solo.phase is Phase.EJECTED
    fail(fleet, a, 3, FailureKind.AMBIGUOUS)  # b still serves llama: a may go
    assert a.phase is Phase.EJECTED
    fail(fleet, b, 10, FailureKind.AMBIGUOUS)  # now b is llama's last
    assert b.phase is Phase.UP


def test_a_container_that_was_down_serves_the_rest_of_its_ejection_then_probation() -> None:
    fleet, _ = make_fleet()
    a = fleet.containers["a"]
    fail(fleet, a, 3)
    fleet.probe_failed(a, "connection refused")
    assert a.phase is Phase.DOWN
    fleet.probe_passed(a, **PROBE)  # type: ignore[arg-type]
    assert a.phase is Phase.EJECTED  # its ejection has time left
    fleet.probe_failed(a, "connection refused")
    run_out(a)  # its ejection ran out while it was down
    fleet.probe_passed(a, **PROBE)  # type: ignore[arg-type]
    assert a.phase is Phase.PROBATION  # not straight back up: nothing showed that it serves


def test_a_probe_after_the_ejection_time_moves_it_to_probation_without_a_request() -> None:
    fleet, _ = make_fleet()
    a = fleet.containers["a"]
    fail(fleet, a, 3)
    run_out(a)
    assert a.phase is Phase.EJECTED
    fleet.probe_passed(a, **PROBE)  # type: ignore[arg-type]
    assert a.phase is Phase.PROBATION


def test_a_deep_check_on_probation_decides_like_a_request() -> None:
    fleet, _ = make_fleet()
    a, b = fleet.containers["a"], fleet.containers["b"]
    fail(fleet, a, 3)
    after_ejection(fleet, a)
    fleet.deep_check_failed(a, "deep check of llama3.2:3b: HTTP 500")
    assert a.phase is Phase.EJECTED and 9.0 < ejected_for(a) <= 10.0
    after_ejection(fleet, a)
    fleet.deep_check_passed(a)
    assert a.phase is Phase.UP and a.ejection is None
    assert b.phase is Phase.UP


def test_every_ejection_and_passive_down_mark_is_logged() -> None:
    fleet, _ = make_fleet()
    a, b = fleet.containers["a"], fleet.containers["b"]
    with structlog.testing.capture_logs() as logs:
        fail(fleet, a, 3)
        fleet.request_failed(b, "cannot connect: [Errno 111] Connection refused", FailureKind.REFUSED)
        fail(fleet, b, 3)  # in-flight streams of a container that went down: ejected while down
    events = [(e["event"], e.get("container"), e["log_level"]) for e in logs]
    assert ("container_ejected", "a", "warning") in events
    assert ("container_down", "b", "warning") in events
    assert ("container_ejected", "b", "warning") in events
    ejected_a = next(e for e in logs if e["event"] == "container_ejected" and e["container"] == "a")
    assert ejected_a["reason"] == "stream cut" and ejected_a["seconds"] == 5.0
    assert sum(e["event"] == "container_request_failed" for e in logs) == 7
