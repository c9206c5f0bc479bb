"""The routing policies: in what order a model's available containers are offered.

Each model names one (catalog `routing:`; README, "Placement"). The
balancer hands a policy the model's containers that may take a request now
(its own, available, in catalog order) and tries them in the order it gets
back; every policy puts healthy containers before those on probation.

- least_loaded: the model loaded before not loaded, then the fewest requests
  in flight, then catalog order.
- round_robin: each container in turn.
- affinity: a conversation (its key: router.http.prefix) goes back to the
  container that served it last, where the model's slots still hold its
  prompt, so only the new turn is processed. Unless that container is gone or
  tried already (failover), is worse off than a sibling (probation, or the
  model not loaded there), or is saturated: its queue is longer than
  `affinity_max_queue`, or it has `num_parallel` in flight while a sibling as
  well off has a free slot (every slot of it then serves other requests, so
  this conversation's cache there is already overwritten). Then, as for a new
  conversation, the least-loaded sibling takes it (equal loads split by the
  key, so conversations spread and separate router processes agree), and
  becomes the conversation's container.

The affinity table is an LRU of `affinity_max_keys` entries, (model, key) to
a container name: a dict lookup to order, one move to record; nothing of the
prompt is kept.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from router.catalog import Model, Routing
from router.fleet.state import ContainerState, Phase

MIX = 0x9E3779B97F4A7C15  # 2^64 / golden ratio: spreads keys over containers
MASK = (1 << 64) - 1
OUTCOMES = ("hit", "miss", "spillover", "failover")


def _tier(state: ContainerState, model: Model) -> int:
    """0 best: up with the model loaded; then up without it; then probation."""
    return (state.phase is not Phase.UP) * 2 + (model.key not in state.loaded)


def by_load(states: list[ContainerState], model: Model) -> list[ContainerState]:
    """Least loaded first; the sort is stable, so catalog order breaks ties."""
    if len(states) > 1:
        states.sort(key=lambda s: (_tier(s, model), s.in_flight))
    return states


class Policy(Protocol):
    def order(self, model: Model, states: list[ContainerState], key: int | None) -> list[ContainerState]:
        """`states` (the model's available containers, catalog order, at least two) best first."""

    def placed(self, model: Model, key: int | None, state: ContainerState, offered: list[ContainerState]) -> None:
        """`state`, one of `offered`, took the request."""


class LeastLoaded:
    def order(self, model: Model, states: list[ContainerState], key: int | None) -> list[ContainerState]:
        return by_load(states, model)

    def placed(self, model: Model, key: int | None, state: ContainerState, offered: list[ContainerState]) -> None:
        pass


class RoundRobin:
    def __init__(self) -> None:
        self._turns: dict[str, int] = {}  # by model key: requests ordered so far

    def order(self, model: Model, states: list[ContainerState], key: int | None) -> list[ContainerState]:
        turn = self._turns.get(model.key, 0)
        self._turns[model.key] = turn + 1
        start = turn % len(states)
        rotated = states[start:] + states[:start]
        rotated.sort(key=lambda s: s.phase is not Phase.UP)  # stable: the turn holds within each phase
        return rotated

    def placed(self, model: Model, key: int | None, state: ContainerState, offered: list[ContainerState]) -> None:
        pass


@dataclass(slots=True)
class AffinityCounts:
    """One model's placements of keyed requests (each attempt counts: a retry on a sibling is a failover)."""

    tag: str
    hit: int = 0  # the conversation's container took it
    miss: int = 0  # a conversation not seen (or forgotten): the least-loaded container took it
    spillover: int = 0  # its container was saturated: a sibling took it
    failover: int = 0  # its container was gone, failed, or worse off than a sibling: a sibling took it

    def as_dict(self) -> dict[str, int]:
        return {outcome: getattr(self, outcome) for outcome in OUTCOMES}


class Affinity:
    def __init__(self, max_keys: int = 65536, max_queue: int = 0) -> None:
        self.max_keys = max_keys
        self.max_queue = max_queue
        self.homes: OrderedDict[tuple[str, int], str] = OrderedDict()  # (model key, conversation key) -> container
        self.counts: dict[str, AffinityCounts] = {}  # by model key
        self._salts: dict[str, int] = {}  # by container name

    def configure(self, *, max_keys: int, max_queue: int) -> None:
        self.max_keys, self.max_queue = max_keys, max_queue
        while len(self.homes) > max_keys:
            self.homes.popitem(last=False)

    def order(self, model: Model, states: list[ContainerState], key: int | None) -> list[ContainerState]:
        if key is None:
            return by_load(states, model)
        home_name = self.homes.get((model.key, key))
        home = None
        if home_name is not None:
            for state in states:
                if state.name == home_name:
                    home = state
                    break
            if home is not None and self._keeps(home, states, model):
                rest = [s for s in states if s is not home]
                return [home, *by_load(rest, model)] if len(rest) > 1 else [home, *rest]
        # Least loaded first (a passed-over container last among its peers), equal loads
        # in an order the key decides: the same in every router process.
        salt = self._salt
        mixed = key * MIX
        states.sort(key=lambda s: (_tier(s, model), s is home, s.in_flight, ((mixed ^ salt(s.name)) * MIX) & MASK))
        return states

    def _keeps(self, home: ContainerState, states: list[ContainerState], model: Model) -> bool:
        """The conversation stays on `home`: no sibling is better off, and it is not saturated."""
        slots = home.slots
        if slots.queued > self.max_queue:
            return False
        # Full, each of its slots serves another request, so this conversation's cache there
        # is overwritten already: a sibling as well off with a free slot starts it at once.
        full = slots.in_flight >= slots.limit
        tier = _tier(home, model)
        for state in states:
            if state is not home:
                other = _tier(state, model)
                if other < tier or (full and other == tier and state.slots.in_flight < state.slots.limit):
                    return False
        return True

    def _salt(self, name: str) -> int:
        salt = self._salts.get(name)
        if salt is None:
            salt = self._salts[name] = zlib.crc32(name.encode())
        return salt

    def placed(self, model: Model, key: int | None, state: ContainerState, offered: list[ContainerState]) -> None:
        if key is None:
            return
        counts = self.counts.get(model.key)
        if counts is None or counts.tag != model.tag:
            counts = self.counts[model.key] = AffinityCounts(model.tag)
        homes = self.homes
        entry = (model.key, key)
        home_name = homes.get(entry)
        if home_name == state.name:
            counts.hit += 1
            homes.move_to_end(entry)
            return
        if home_name is None:
            counts.miss += 1
        else:
            home = next((s for s in offered if s.name == home_name), None)
            if home is not None and _tier(home, model) <= _tier(state, model):
                counts.spillover += 1
            else:
                counts.failover += 1
            homes.move_to_end(entry)
        homes[entry] = state.name
        if len(homes) > self.max_keys:
            homes.popitem(last=False)


class Policies:
    """One policy object per kind, holding what it remembers across requests."""

    def __init__(self, *, affinity_max_keys: int = 65536, affinity_max_queue: int = 0) -> None:
        self.affinity = Affinity(affinity_max_keys, affinity_max_queue)
        self.by_routing: dict[Routing, Policy] = {
            Routing.AFFINITY: self.affinity,
            Routing.LEAST_LOADED: LeastLoaded(),
            Routing.ROUND_ROBIN: RoundRobin(),
        }

    def __getitem__(self, routing: Routing) -> Policy:
        return self.by_routing[routing]
