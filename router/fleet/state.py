"""One container's runtime state, and the phases it moves through.

    UNKNOWN ──probe ok──▶ UP ◀──────────────── probe ok ──── DOWN
       │                  │ ▲   (refused connection, failed probe: any phase ──▶ DOWN)
       │ probe ok         │ └──── success ───── PROBATION ◀── ejection time up
       │ (added by a      │ failures in a row                 │ a failure
       ▼  reload)         ▼                                   ▼
    WARMING ─preloaded─▶ UP ─────────────────────────────▶ EJECTED (5 s, 10 s, 20 s … up to a cap)

    any phase ──removed from the catalog──▶ DRAINING ──last request of its catalogs ended──▶ (gone)

Only `router.fleet.fleet.Fleet` changes a state, through its transition
methods; everything else reads. Plain slotted classes: read on every request.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field
from typing import Any

from router.catalog import Container, Model
from router.limits import ContainerSlots
from router.upstream.client import ContainerClient
from router.versions import Version


class Phase(enum.StrEnum):
    UNKNOWN = "unknown"  # not probed yet: takes no requests
    WARMING = "warming"  # answers probes; its models are being preloaded (a container a reload added)
    UP = "up"
    DOWN = "down"  # a probe failed or a connection was refused: probed with backoff until it answers
    EJECTED = "ejected"  # real requests failed on it: out of rotation until `ejected_until`, whatever probes say
    PROBATION = "probation"  # back from an ejection: one request at a time until one succeeds
    DRAINING = "draining"  # gone from the catalog: finishes what it has, takes nothing new


ROUTABLE = frozenset({Phase.UP, Phase.PROBATION})


@dataclass(slots=True)
class LoadedModel:
    """One entry of a container's `/api/ps`."""

    name: str
    key: str
    expires_at: float | None  # epoch seconds; None when unparsable or never
    size_vram: int = 0
    context_length: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Ejection:
    reason: str
    until: float  # epoch seconds
    count: int  # consecutive ejections; each one lasts twice as long as the one before


@dataclass(slots=True, eq=False)
class ContainerState:
    container: Container
    slots: ContainerSlots
    client: ContainerClient
    phase: Phase = Phase.UNKNOWN
    warm_first: bool = False  # added by a reload: preload its models before it takes requests
    drained_from: Phase | None = None  # its phase when a reload removed it: requests of the catalogs that had it still go there if it was up
    consecutive_failures: int = 0
    last_probe: float | None = None  # epoch seconds
    last_error: str | None = None
    down_since: float | None = None
    version: str | None = None
    version_key: Version | None = None  # `version` parsed (router.versions), for the endpoint gate
    loaded: dict[str, LoadedModel] = field(default_factory=dict)  # by model key, from the last /api/ps
    tags: list[dict[str, Any]] = field(default_factory=list)  # the last /api/tags entries
    served: int = 0
    failures: int = 0
    ejection: Ejection | None = None  # the current or last ejection
    ejections: int = 0  # consecutive ejections (reset after a quiet spell)
    ejected_total: int = 0
    last_ejection_end: float | None = None
    load_seconds: list[float] = field(default_factory=list)  # recent model load times, to bound keep-warm pings
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)  # probe now (a passive failure)

    @property
    def name(self) -> str:
        return self.container.name

    @property
    def url(self) -> str:
        return self.container.url

    @property
    def in_flight(self) -> int:
        return self.slots.in_flight

    @property
    def routable(self) -> bool:
        return self.phase in ROUTABLE

    def has_loaded(self, model: Model) -> bool:
        return model.key in self.loaded

    def serves(self, needed: Version) -> bool:
        """Whether its Ollama is new enough for an endpoint first served in `needed`
        (a version not known yet, or a source build, is given the benefit of the doubt)."""
        version = self.version_key
        return version is None or version >= needed
