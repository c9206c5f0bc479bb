"""Counters behind `GET /_emulator/stats`, for tests asserting who served what.

What counts (since start):
- requests: every request to a model endpoint (/api/generate, /api/chat,
  /api/embed, /api/embeddings, /v1/chat/completions, /v1/completions,
  /v1/embeddings, /v1/responses, /v1/messages, /v1/audio/transcriptions),
  whatever its outcome: load/unload pings, keep-warm
  requests, errors and injected faults included. Listing, show, pull,
  version and /_emulator/* are not counted.
- in_flight: model requests being handled right now (queued ones included).
- max_in_flight: the most model requests in flight at one moment (what a
  client-side cap such as the router's `num_parallel` let through at once).
- cancelled: model requests ended by their client disconnecting (while
  queued, loading, hanging or generating).
- loads / unloads: model loads completed / runners unloaded (idle timer,
  keep_alive 0, eviction).
- cloud_requests: requests naming a cloud model (`:cloud` / `-cloud`) that
  the emulator refused as Ollama without network does (403 with cloud
  disabled, else 502); they never touch a runner (docs/ollama-wire-2026.md §6.2).
- by_model: short display name (`llama3.2:latest`) -> requests whose body
  named that model with a valid name (installed or not).
- prompt_tokens_processed / prompt_tokens_reused: prompt tokens evaluated /
  found already in the request's slot cache (see kvcache.py), counted when a
  request's prompt evaluation starts (so one cancelled during it counts too);
  embeddings count as processed. prompt_tokens_by_model has both per model
  (short display name), for the models that evaluated a prompt.
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
    cloud_requests: int = 0
    by_model: dict[str, int] = field(default_factory=dict)
    prompt_tokens_processed: int = 0
    prompt_tokens_reused: int = 0
    prompt_tokens_by_model: dict[str, dict[str, int]] = field(default_factory=dict)

    def note_model(self, display: str) -> None:
        self.by_model[display] = self.by_model.get(display, 0) + 1

    def note_prompt(self, display: str, processed: int, reused: int) -> None:
        self.prompt_tokens_processed += processed
        self.prompt_tokens_reused += reused
        counts = self.prompt_tokens_by_model.get(display)
        if counts is None:
            counts = self.prompt_tokens_by_model[display] = {"prompt_tokens_processed": 0, "prompt_tokens_reused": 0}
        counts["prompt_tokens_processed"] += processed
        counts["prompt_tokens_reused"] += reused

    def snapshot(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "cancelled": self.cancelled,
            "loads": self.loads,
            "unloads": self.unloads,
            "cloud_requests": self.cloud_requests,
            "by_model": dict(self.by_model),
            "prompt_tokens_processed": self.prompt_tokens_processed,
            "prompt_tokens_reused": self.prompt_tokens_reused,
            "prompt_tokens_by_model": {name: dict(counts) for name, counts in self.prompt_tokens_by_model.items()},
        }
