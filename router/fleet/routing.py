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
  prompt, so only the new turn is processed. Unless its prompt is no longer
  there, that container is gone or tried already (failover), is worse off
  than a sibling (probation, or the model not loaded there), or is saturated:
  its queue is longer than `affinity_max_queue`, or it has `num_parallel` in
  flight while a sibling as well off has a free slot. Then, as for a new
  conversation, a sibling takes it and becomes the conversation's container.

Where the prompts are: llama-server gives a prompt the free slot of a
conversation sharing more than half of it (for a first turn, a session with
the same system prompt), else the least recently released free slot, so a
runner's `num_parallel` slots hold the last conversations it served. The
policy keeps that picture per (container, model) from its own placements
and releases (requests without a key count too: they take a slot all the
same): which conversations are there, busy or idle, their weight and
preamble. So it knows whether a container still holds a conversation, and
what the next new conversation there would displace. A new conversation (or
one whose prompt was pushed out) goes to a container with a free slot where
that costs least (an empty slot, else the displaced conversation's weight,
halved for every so many placements since it was last used: live
conversations keep their prompts, the fleet's slots act as one cache), then
the fewest in flight, equal ones split by the key (so conversations spread
and separate router processes agree).

The affinity table is an LRU of `affinity_max_keys` entries, (model, key) to
a container name, plus the small per-runner lists: dict lookups to order,
one move each to record; nothing of the prompt is kept.
"""

from __future__ import annotations

import math
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
    def order(self, model: Model, states: list[ContainerState], key: int | None, preamble: int = 0) -> list[ContainerState]:
        """`states` (the model's available containers, catalog order, at least two) best first."""

    def placed(
        self, model: Model, key: int | None, state: ContainerState, offered: list[ContainerState], weight: int = 0, preamble: int = 0
    ) -> None:
        """`state`, one of `offered`, took the request; `weight`: its body's length, what its prompt
        would cost to evaluate again."""

    def released(self, model: Model, key: int | None, state: ContainerState) -> None:
        """The request `placed` on `state` ended."""


class Unlearned:
    """A policy that orders by the containers' state alone: placements teach it nothing."""

    def placed(
        self, model: Model, key: int | None, state: ContainerState, offered: list[ContainerState], weight: int = 0, preamble: int = 0
    ) -> None:
        pass

    def released(self, model: Model, key: int | None, state: ContainerState) -> None:
        pass


class LeastLoaded(Unlearned):
    def order(self, model: Model, states: list[ContainerState], key: int | None, preamble: int = 0) -> list[ContainerState]:
        return by_load(states, model)


class RoundRobin(Unlearned):
    def __init__(self) -> None:
        self._turns: dict[str, int] = {}  # by model key: requests ordered so far

    def order(self, model: Model, states: list[ContainerState], key: int | None, preamble: int = 0) -> list[ContainerState]:
        turn = self._turns.get(model.key, 0)
        self._turns[model.key] = turn + 1
        start = turn % len(states)
        rotated = states[start:] + states[:start]
        rotated.sort(key=lambda s: s.phase is not Phase.UP)  # stable: the turn holds within each phase
        return rotated


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


@dataclass(slots=True)
class Served:
    """A conversation a runner's slots hold, as far as this router's placements tell."""

    placement: int  # the model's placement count when a request of it last started or ended there
    weight: int  # its last body's length: what its prompt would cost to evaluate again
    preamble: int  # its system part's hash (router.http.prefix), 0: none
    busy: int = 0  # its requests in flight there: a busy slot is no other request's to take


NO_RUNNERS: dict[str, OrderedDict[int, Served]] = {}


class Affinity:
    def __init__(self, max_keys: int = 65536, max_queue: int = 0) -> None:
        self.max_keys = max_keys
        self.max_queue = max_queue
        self.homes: OrderedDict[tuple[str, int], str] = OrderedDict()  # (model key, conversation key) -> container
        self.counts: dict[str, AffinityCounts] = {}  # by model key
        # model key -> container name -> {conversation key: Served}, least recent first:
        # what each runner's slots hold (at most its num_parallel entries)
        self.runners: dict[str, dict[str, OrderedDict[int, Served]]] = {}
        self._placements: dict[str, int] = {}  # by model key
        self._salts: dict[str, int] = {}  # by container name

    def configure(self, *, max_keys: int, max_queue: int) -> None:
        self.max_keys, self.max_queue = max_keys, max_queue
        while len(self.homes) > max_keys:
            self.homes.popitem(last=False)

    def order(self, model: Model, states: list[ContainerState], key: int | None, preamble: int = 0) -> list[ContainerState]:
        if key is None:
            return by_load(states, model)
        passed = None  # the conversation's container, passed over although it holds the prompt
        home_name = self.homes.get((model.key, key))
        runners = self.runners.get(model.key, NO_RUNNERS)
        if home_name is not None and key in runners.get(home_name, ()):
            for state in states:
                if state.name == home_name:
                    if self._keeps(state, states, model):
                        rest = [s for s in states if s is not state]
                        return [state, *by_load(rest, model)] if len(rest) > 1 else [state, *rest]
                    passed = state
                    break
        # A free slot first, there where the conversation it displaces costs least to lose; then
        # the fewest in flight (a passed-over container last among its peers); equal ones in an
        # order the key decides: the same in every router process.
        salt, mixed = self._salt, key * MIX
        now, horizon = self._placements.get(model.key, 0), float(sum(s.slots.limit for s in states))
        shared = preamble if home_name is None else 0  # only a first turn is mostly its preamble
        states.sort(
            key=lambda s: (
                _tier(s, model),
                s is passed,
                s.slots.in_flight >= s.slots.limit,
                _loss(runners.get(s.name), s.slots.limit, shared, now, horizon),
                s.in_flight,
                ((mixed ^ salt(s.name)) * MIX) & MASK,
            )
        )
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

    def placed(
        self, model: Model, key: int | None, state: ContainerState, offered: list[ContainerState], weight: int = 0, preamble: int = 0
    ) -> None:
        placement = self._placements[model.key] = self._placements.get(model.key, 0) + 1
        if key is None:  # no conversation, but it takes a slot: the least recently used one's prompt is gone
            self._served(state, model, -placement, Served(placement, weight, 0), False)  # its end is not told: never busy
            return
        counts = self.counts.get(model.key)
        if counts is None or counts.tag != model.tag:
            counts = self.counts[model.key] = AffinityCounts(model.tag)
        homes = self.homes
        entry = (model.key, key)
        home_name = homes.get(entry)
        held = home_name is not None and key in self.runners.get(model.key, NO_RUNNERS).get(home_name, ())
        self._served(state, model, key, Served(placement, weight, preamble, busy=1), home_name is None)
        if not held:  # new, forgotten, or its prompt pushed out since: nothing to go back for
            counts.miss += 1
        elif home_name == state.name:
            counts.hit += 1
            homes.move_to_end(entry)
            return
        else:
            home = next((s for s in offered if s.name == home_name), None)
            if home is not None and _tier(home, model) <= _tier(state, model):
                counts.spillover += 1
            else:
                counts.failover += 1
        if home_name is not None:
            homes.move_to_end(entry)
        homes[entry] = state.name
        if len(homes) > self.max_keys:
            homes.popitem(last=False)

    def _served(self, state: ContainerState, model: Model, key: int, entry: Served, first_turn: bool) -> None:
        runners = self.runners.get(model.key)
        if runners is None:
            runners = self.runners[model.key] = {}
        served = runners.get(state.name)
        if served is None:
            served = runners[state.name] = OrderedDict()
        known = served.pop(key, None)
        if known is not None:
            entry.busy += known.busy
        elif first_turn and entry.preamble:
            taken = _sharing(served, entry.preamble, oldest=True)  # its slot went to this conversation
            if taken is not None:
                _remove(served, taken)
        served[key] = entry
        while len(served) > state.slots.limit:  # the least recently used idle slot went to it
            _remove(served, _idle(served) or next(iter(served.values())))

    def released(self, model: Model, key: int | None, state: ContainerState) -> None:
        """Its slot was used last now (llama-server's LRU counts a slot's release) and is free again."""
        served = self.runners.get(model.key, NO_RUNNERS).get(state.name)
        if key is None or served is None:
            return
        entry = served.get(key)
        if entry is not None:
            entry.busy = max(0, entry.busy - 1)
            entry.placement = self._placements.get(model.key, 0)
            served.move_to_end(key)


def _loss(served: OrderedDict[int, Served] | None, slots: int, preamble: int, now: int, horizon: float) -> float:
    """What a new conversation on a runner would cost the conversation whose slot it takes: its
    weight, as likely to matter as it is recent (halved every `horizon` placements of the model, its
    containers' slots). The slot is that of a conversation with the same `preamble` if the runner
    holds one idle (llama-server's slot similarity), else the least recently used idle one; 0 for a
    slot never used (or none free: the container is full, ordered apart)."""
    if served is None:
        return 0.0
    victim = _sharing(served, preamble) if preamble else None
    if victim is None:
        if len(served) < slots:
            return 0.0
        victim = _idle(served)
        if victim is None:
            return 0.0
    return victim.weight * math.exp2(min(0.0, (victim.placement - now) / horizon))  # never above its weight


def _idle(served: OrderedDict[int, Served]) -> Served | None:
    """The least recently used of the conversations whose slots are free."""
    for entry in served.values():
        if not entry.busy:
            return entry
    return None


def _remove(served: OrderedDict[int, Served], entry: Served) -> None:
    del served[next(key for key, value in served.items() if value is entry)]


def _sharing(served: OrderedDict[int, Served], preamble: int, *, oldest: bool = False) -> Served | None:
    """The idle conversation of `served` with that preamble whose slot a new one would take: the
    most recent (the costliest to lose, as the ordering assumes) or the `oldest` (recorded as gone)."""
    found = None
    for entry in served.values():  # least recent first; at most num_parallel of them
        if entry.preamble == preamble and not entry.busy:
            if oldest:
                return entry
            found = entry
    return found


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
