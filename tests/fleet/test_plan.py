"""The attempt plan (containers × fallback models), on real fleet states and no network:
what the proxy is offered, in which order, after which outcome."""

from __future__ import annotations

import textwrap

from router.catalog import Catalog, Model, parse_catalog
from router.fleet.balancer import Balancer
from router.fleet.fleet import FailureKind, Fleet
from router.fleet.plan import Attempt, advance, attempts, fallback_chain
from tests.harness import fleet_of

CATALOG = """
version: 1
containers:
  a: {gpus: [0], port: 11001}
  b: {gpus: [1], port: 11002}
  q: {gpus: [2], port: 11003}
  m: {gpus: [3], port: 11004}
models:
  llama3.2:3b: {containers: [a, b], fallback: [qwen2.5:7b, mistral:7b]}
  qwen2.5:7b: {containers: [q], fallback: [mistral:7b]}
  mistral:7b: {containers: [m]}
"""


def setup() -> tuple[Fleet, Catalog, Balancer]:
    catalog = parse_catalog(textwrap.dedent(CATALOG), "plan.yaml").catalog
    fleet = fleet_of(catalog, failure_threshold=1)
    for state in fleet.containers.values():
        fleet.probe_passed(state, version="0.32.15", loaded={}, tags=[])
    return fleet, catalog, Balancer(fleet)


def model(catalog: Catalog, name: str) -> Model:
    found = catalog.resolve(name)
    assert found is not None
    return found


def offered(attempt: Attempt | None) -> tuple[str, list[str], bool] | None:
    return None if attempt is None else (attempt.model.tag, [s.name for s in attempt.candidates], attempt.fallback)


def plan_for(catalog: Catalog, balancer: Balancer, name: str, allowed: set[str] | None = None) -> tuple[Attempt | None, object]:
    chain = fallback_chain(model(catalog, name), catalog.resolve)
    plan = attempts(chain, lambda m, tried: balancer.candidates(m, tried), None if allowed is None else (lambda m: m.tag in allowed))
    return next(plan, None), plan


def test_fallback_chain_is_the_model_then_its_fallbacks_once_each() -> None:
    _, catalog, _ = setup()
    llama = model(catalog, "llama3.2:3b")
    assert [m.tag for m in fallback_chain(llama, catalog.resolve)] == ["llama3.2:3b", "qwen2.5:7b", "mistral:7b"]
    qwen = model(catalog, "qwen2.5:7b")
    assert [m.tag for m in fallback_chain(qwen, catalog.resolve)] == ["qwen2.5:7b", "mistral:7b"]


def test_every_container_of_the_model_then_each_fallback() -> None:
    _, catalog, balancer = setup()
    first, plan = plan_for(catalog, balancer, "llama3.2:3b")
    assert offered(first) == ("llama3.2:3b", ["a", "b"], False)
    assert offered(advance(plan, "a")) == ("llama3.2:3b", ["b"], False)  # a tried: not offered again
    assert offered(advance(plan, "b")) == ("qwen2.5:7b", ["q"], True)
    assert offered(advance(plan, "q")) == ("mistral:7b", ["m"], True)
    assert advance(plan, "m") is None


def test_a_refused_queue_gives_way_to_the_next_model() -> None:
    _, catalog, balancer = setup()
    first, plan = plan_for(catalog, balancer, "llama3.2:3b")
    assert first is not None
    assert offered(advance(plan, None)) == ("qwen2.5:7b", ["q"], True)


def test_planning_again_offers_the_same_containers_reordered_from_the_fleet_now() -> None:
    fleet, catalog, balancer = setup()
    first, plan = plan_for(catalog, balancer, "llama3.2:3b")
    assert offered(first) == ("llama3.2:3b", ["a", "b"], False)
    fleet.request_failed(fleet.containers["a"], "stream cut", FailureKind.CONTAINER)  # ejected meanwhile
    assert offered(advance(plan, "")) == ("llama3.2:3b", ["b"], False)


def test_a_container_that_failed_meanwhile_is_skipped_and_a_model_without_any_is_passed_over() -> None:
    fleet, catalog, balancer = setup()
    fleet.probe_failed(fleet.containers["q"], "refused")
    first, plan = plan_for(catalog, balancer, "llama3.2:3b")
    assert offered(first) == ("llama3.2:3b", ["a", "b"], False)
    advance(plan, "a")
    assert offered(advance(plan, "b")) == ("mistral:7b", ["m"], True)  # qwen's only container is down


def test_fallbacks_outside_the_callers_allowlist_are_never_offered() -> None:
    _, catalog, balancer = setup()
    first, plan = plan_for(catalog, balancer, "llama3.2:3b", allowed={"llama3.2:3b", "mistral:7b"})
    assert first is not None
    assert offered(advance(plan, None)) == ("mistral:7b", ["m"], True)
    # the requested model itself was allowed by whoever asked: the allowlist bounds fallbacks only
    first, _ = plan_for(catalog, balancer, "qwen2.5:7b", allowed={"mistral:7b"})
    assert offered(first) == ("qwen2.5:7b", ["q"], False)


def test_nothing_to_offer_when_no_container_of_any_model_can_serve() -> None:
    fleet, catalog, balancer = setup()
    for state in fleet.containers.values():
        fleet.probe_failed(state, "refused")
    first, _ = plan_for(catalog, balancer, "llama3.2:3b")
    assert first is None
