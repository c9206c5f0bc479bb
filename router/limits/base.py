"""The interfaces: container slots, key concurrency, key rates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class QueueFull(Exception):
    """The container is at its cap and its queue is full."""


class QueueTimeout(Exception):
    """Waited `queue_timeout` for a slot without getting one."""


class ContainerGone(Exception):
    """The container went down, or left the catalog, while a request waited in its queue."""


class LimitsUnavailable(Exception):
    """The shared store is unreachable and the router is set to fail closed (503)."""


@dataclass(frozen=True, slots=True)
class LimitsHealth:
    """Where the limits are held now (for /router/status, /readyz and metrics)."""

    store: str  # "local" (this process) or "redis"
    shared: bool = False  # the shared store is answering: its counts are in force
    target: str | None = None  # the store's address, never its password
    failure_mode: str | None = None  # "open": local limits while the store is lost; "closed": 503
    since: float | None = None  # epoch seconds: when the current connection state began
    losses: int = 0  # times the connection to the store was lost
    last_error: str | None = None

    @property
    def fallback(self) -> bool:
        """Local limits are in force in place of the unreachable store."""
        return self.store != "local" and not self.shared and self.failure_mode == "open"

    @property
    def unavailable(self) -> bool:
        """Requests are refused (fail closed) until the store answers again."""
        return self.store != "local" and not self.shared and self.failure_mode == "closed"


class ContainerSlots(Protocol):
    """One container's in-flight cap (its `num_parallel`) and its bounded queue."""

    limit: int
    max_queue: int

    @property
    def in_flight(self) -> int:
        """Requests this router holds slots for (read on every pick: must be cheap)."""

    @property
    def queued(self) -> int: ...

    @property
    def queue_open(self) -> bool:
        """A waiter would be accepted."""

    async def try_acquire(self, caller: str) -> bool:
        """Take a free slot at once, if there is one and nobody waits for it."""

    async def wait(self, caller: str, timeout: float) -> None:
        """Queue for a slot; returns holding it. QueueFull, QueueTimeout or ContainerGone."""

    def release(self, caller: str) -> None:
        """Give a slot back (to the fairest waiter, if any)."""

    def fail_waiters(self, exc: BaseException) -> None:
        """Every queued request gets `exc` (the container went down)."""

    def resize(self, limit: int, max_queue: int) -> None:
        """New settings (a reload): takes effect for the next acquisitions."""


class Limits(Protocol):
    async def start(self) -> None:
        """Connect (a shared store); the router serves either way."""

    async def close(self) -> None:
        """Give back what this process holds."""

    def health(self) -> LimitsHealth: ...

    def container_slots(self, name: str, limit: int, max_queue: int) -> ContainerSlots: ...

    async def acquire_key(self, key: str, max_concurrent: int | None) -> bool:
        """Count one more request of `key` in flight; False (nothing counted) at its maximum."""

    def release_key(self, key: str) -> None: ...

    def key_in_flight(self, key: str) -> int: ...

    async def take_token(self, key: str, per_second: float, burst: int) -> float:
        """Take one token from `key`'s bucket: 0.0 when granted, else the seconds until one is."""
