"""Counters behind `GET /_emulator/stats`, for tests asserting who served what.

What counts (since start):
- requests: every request to a model endpoint (/api/generate, /api/chat,
  /api/embed, /api/embeddings, /v1/chat/completions, /v1/completions,
  /v1/embeddings), whatever its outcome: load/unload pings, keep-warm
  requests, errors and injected faults included. Listing, show, pull,
  version and /_emulator/* are not counted.
- in_flight: model requests being handled right now (queued ones included).
- max_in_flight: the most model requests in flight at one moment (what a
  client-side cap such as the router's `num_parallel` let through at once).
- cancelled: model requests ended by their client disconnecting (while
  queued, loading, hanging or generating).
- loads / unloads: model loads completed / runners unloaded (idle timer,
  keep_alive 0, eviction).
- by_model: short display name (`llama3.2:latest`) -> requests whose body
  named that model with a valid name (installed or not).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Stats:
    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    cancelled: int = 0
    loads: int = 0
    unloads: int = 0
    by_model: dict[str, int] = field(default_factory=dict)

    def note_model(self, display: str) -> None:
        self.by_model[display] = self.by_model.get(display, 0) + 1

    def snapshot(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "cancelled": self.cancelled,
            "loads": self.loads,
            "unloads": self.unloads,
            "by_model": dict(self.by_model),
        }
