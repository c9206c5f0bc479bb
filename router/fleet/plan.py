"""The attempt plan: which model on which containers, in what order.

A pure generator over a view of the fleet, unit-tested without HTTP; the
proxy only executes it. For the requested model, then each of its fallback
models the caller may use, it yields the containers that could take the
request now (best first), and is told back which one the proxy used; after a
failure it yields the remaining ones again, re-ordered from the fleet's state
at that moment (a failed container may have been ejected meanwhile). A model
whose containers are all tried, or whose queues refused, gives way to the next.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

from router.catalog import Model
from router.fleet.state import ContainerState


@dataclass(frozen=True, slots=True)
class Attempt:
    model: Model
    candidates: list[ContainerState]
    fallback: bool  # the model is one of the requested model's fallbacks


# Sent back after each attempt: the container used (not offered again), "" to plan again
# from the same state (the chosen queue dissolved), or None when no slot could be had.
Plan = Generator[Attempt, str | None, None]


def attempts(
    chain: Sequence[Model],
    order: Callable[[Model, set[str]], list[ContainerState]],
    allowed: Callable[[Model], bool] | None = None,
) -> Plan:
    """`chain`: the model, then its fallbacks; `order(model, tried)`: the candidates now;
    `allowed`: the caller's allowlist (a fallback outside it is skipped)."""
    for index, target in enumerate(chain):
        if index and allowed is not None and not allowed(target):
            continue
        tried: set[str] = set()
        while candidates := order(target, tried):
            used = yield Attempt(target, candidates, fallback=index > 0)
            if used is None:
                break
            tried.add(used)


def advance(plan: Plan, used: str | None) -> Attempt | None:
    """Tell the plan what the last attempt used; the next attempt, or None when none is left."""
    try:
        return plan.send(used)
    except StopIteration:
        return None


def fallback_chain(model: Model, resolve: Callable[[str], Model | None]) -> tuple[Model, ...]:
    """The model, then each of its catalog fallbacks (once each, in order)."""
    chain = [model]
    for tag in model.fallback:
        target = resolve(tag)
        if target is not None and target not in chain:
            chain.append(target)
    return tuple(chain)
