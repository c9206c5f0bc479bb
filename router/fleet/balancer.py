"""Pick a container for a model and hold one of its in-flight slots.

The candidates are the model's own containers that may take a request now
(`Fleet.available`: a container on probation after an ejection takes one
request at a time), in the order of the model's routing policy
(router.fleet.routing: affinity, least_loaded or round_robin; each puts
healthy containers before those on probation). A container's in-flight cap is
its `num_parallel`: the first candidate with a free slot takes the request.
When every candidate is full, wait in the shortest queue of a healthy one;
when every queue is full, refuse at once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from router.catalog import Model
from router.fleet.fleet import Fleet
from router.fleet.routing import Policies
from router.fleet.state import ContainerState, Phase
from router.limits import ContainerGone, QueueFull, QueueTimeout


class NoContainer(Exception):
    """No container of this model can take requests (all down, ejected or already tried)."""


class Balancer:
    def __init__(self, fleet: Fleet, policies: Policies | None = None) -> None:
        self.fleet = fleet
        self.policies = policies if policies is not None else Policies()

    def candidates(
        self,
        model: Model,
        exclude: set[str] | frozenset[str] = frozenset(),
        containers: Mapping[str, ContainerState] | None = None,
        key: int | None = None,
        preamble: int = 0,
    ) -> list[ContainerState]:
        """`containers`: the states of the catalog the request started under (default: the fleet's now);
        `key`, `preamble`: the request's conversation (router.http.prefix), for affinity."""
        now = time.time()
        available = self.fleet.available
        pool = self.fleet.containers if containers is None else containers
        states = [s for name in model.containers if name not in exclude and (s := pool.get(name)) is not None and available(s, now)]
        if len(states) > 1:
            return self.policies[model.routing].order(model, states, key, preamble)
        return states

    def placed(
        self, model: Model, key: int | None, state: ContainerState, offered: list[ContainerState], weight: int = 0, preamble: int = 0
    ) -> None:
        """`state`, one of the candidates `offered`, holds a slot for the request: the policy learns it
        (a request without a key too: it takes one of the model's slots there all the same);
        `weight`: the request's body length, what its prompt would cost to evaluate again."""
        self.policies[model.routing].placed(model, key, state, offered, weight, preamble)

    def released(self, model: Model, key: int | None, state: ContainerState) -> None:
        """The request `placed` on `state` ended (its slot there is free again)."""
        self.policies[model.routing].released(model, key, state)

    async def acquire(self, candidates: list[ContainerState], caller: str, queue_timeout: float) -> ContainerState:
        """A container of `candidates` with a slot held for `caller`, who must `slots.release(caller)`."""
        if not candidates:
            raise NoContainer()
        for state in candidates:
            if state.phase is Phase.PROBATION and state.in_flight:
                continue  # one request at a time (another may have taken it since the candidates were listed)
            if await state.slots.try_acquire(caller):
                return state
        takes_waiters = self.fleet.takes_waiters
        queues = [s for s in candidates if takes_waiters(s) and s.slots.queue_open]
        if not queues:
            raise QueueFull(candidates[0].name)
        state = min(queues, key=lambda s: s.slots.queued)
        await state.slots.wait(caller, queue_timeout)
        return state


__all__ = ["Balancer", "ContainerGone", "NoContainer", "QueueFull", "QueueTimeout"]
