"""Fleet states without a network, for the balancer's and the policies' unit tests."""

from __future__ import annotations

import textwrap

from router.catalog import Catalog, Model, parse_catalog
from router.fleet.balancer import Balancer
from router.fleet.fleet import Fleet
from router.fleet.state import ContainerState, LoadedModel
from tests.harness import fleet_of

CATALOG = """
version: 1
containers:
  a: {gpus: [0], port: 11001, num_parallel: 2}
  b: {gpus: [1], port: 11002, num_parallel: 2}
  c: {gpus: [2], port: 11003, num_parallel: 2}
models:
  llama3.2:3b: {containers: [a, b, c]}
"""

# Two models, each on containers of its own: a balancer must never look past a model's own.
TWO_MODELS = """
version: 1
containers:
  l1: {gpus: [0], port: 11001, num_parallel: 2}
  l2: {gpus: [1], port: 11002, num_parallel: 2}
  q1: {gpus: [2], port: 11003, num_parallel: 2}
  q2: {gpus: [3], port: 11004, num_parallel: 2}
models:
  llama3.2:3b: {containers: [l1, l2]}
  qwen2.5:7b: {containers: [q1, q2]}
"""


def make_fleet(text: str = CATALOG, *, max_queue: int = 2, failure_threshold: int = 3) -> tuple[Fleet, Catalog]:
    catalog: Catalog = parse_catalog(textwrap.dedent(text), "unit.yaml").catalog
    fleet = fleet_of(catalog, max_queue=max_queue, failure_threshold=failure_threshold)
    for state in fleet.containers.values():
        fleet.probe_passed(state, version="0.32.15", loaded={}, tags=[])
    return fleet, catalog


def model_of(catalog: Catalog, name: str = "llama3.2:3b") -> Model:
    model = catalog.resolve(name)
    assert model is not None
    return model


async def full_fleet(*, max_queue: int, failure_threshold: int = 3) -> tuple[Fleet, Model, Balancer]:
    """A fleet whose every slot (3 containers x num_parallel 2) is taken, and its balancer."""
    fleet, catalog = make_fleet(max_queue=max_queue, failure_threshold=failure_threshold)
    model = model_of(catalog)
    balancer = Balancer(fleet)
    for _ in range(6):
        await balancer.acquire(balancer.candidates(model), "k", 1)
    return fleet, model, balancer


async def take(state: ContainerState, slots: int, caller: str = "k") -> None:
    for _ in range(slots):
        assert await state.slots.try_acquire(caller)


def load(fleet: Fleet, state: ContainerState, model: Model) -> None:
    fleet.model_loaded(state, LoadedModel(name=model.tag, key=model.key, expires_at=None))


def names(states: list[ContainerState]) -> list[str]:
    return [s.name for s in states]


def queued(fleet: Fleet) -> int:
    return sum(s.slots.queued for s in fleet.containers.values())
