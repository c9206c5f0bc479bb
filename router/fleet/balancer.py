"""Pick a container for a model and hold one of its in-flight slots.

Policy (README, "Routing"): among the model's containers that are not known to
be down, prefer those with the model loaded, then the fewest requests in
flight, then catalog order (primary first). A container's in-flight cap is its
`num_parallel`. When every candidate is full, wait in the shortest bounded
queue; when every queue is full, refuse at once.
"""

from __future__ import annotations

from router.catalog import Model
from router.fleet.state import ContainerGone, ContainerState, Fleet


class NoContainer(Exception):
    """No container of this model can take requests (all down or already tried)."""


class QueueFull(Exception):
    """Every candidate container is at its cap and its queue is full."""


class QueueTimeout(Exception):
    """Waited `queue_timeout` for a slot without getting one."""


class Balancer:
    def __init__(self, fleet: Fleet, *, queue_timeout: float) -> None:
        self.fleet = fleet
        self.queue_timeout = queue_timeout

    def candidates(self, model: Model, exclude: set[str]) -> list[ContainerState]:
        states = [s for s in self.fleet.states_for(model) if s.routable and s.name not in exclude]
        if len(states) > 1:
            order = {name: i for i, name in enumerate(model.containers)}
            states.sort(key=lambda s: (not s.has_loaded(model), s.in_flight, order[s.name]))
        return states

    async def acquire(self, model: Model, exclude: set[str]) -> ContainerState:
        """A container with a slot held for the caller, who must `release()` it."""
        states = self.candidates(model, exclude)
        if not states:
            raise NoContainer(model.tag)
        for state in states:
            if state.try_acquire():
                return state
        open_queues = [s for s in states if not s.queue_full]
        if not open_queues:
            raise QueueFull(model.tag)
        state = min(open_queues, key=lambda s: len(s.waiters))
        try:
            await state.wait_for_slot(self.queue_timeout)
        except TimeoutError:
            raise QueueTimeout(model.tag) from None
        return state


__all__ = ["Balancer", "ContainerGone", "NoContainer", "QueueFull", "QueueTimeout"]
