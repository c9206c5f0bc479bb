"""The per-request record: what one request did, written along its path and
read once at its end by the access log line, the metrics and the console."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

LOGGED_NAME_CHARS = 128  # a client's model name, as far as logs and error messages echo it


def cut(text: str, limit: int = LOGGED_NAME_CHARS) -> str:
    """`text` as logs and error messages may echo it: at most `limit` characters."""
    return text if len(text) <= limit else text[:limit] + f"…(+{len(text) - limit} chars)"


@dataclass(slots=True)
class Record:
    request_id: str
    api: str  # the adapter's name: openai, responses, anthropic, ollama, router
    method: str
    path: str
    model: str | None = None  # the client's name for the model, cut to LOGGED_NAME_CHARS
    model_tag: str | None = None  # the catalog model that name resolved to
    served_model: str | None = None  # the model that answered (a fallback's tag when one served)
    container: str | None = None
    status: int = 0
    bytes_out: int = 0
    ttfb: float | None = None
    queue_wait: float = 0.0
    attempts: int = 0
    fallback_from: str | None = None
    fallback_reason: str | None = None
    stream_broken: str | None = None
    client_left: bool = False
    error: str | None = None
    key_name: str | None = None
    pinned: str | None = None  # request options the router replaced to keep a model's runner (e.g. num_ctx)
    tail: bytes = b""  # the answer's last bytes (where Ollama's eval stats and the APIs' usage are)
    upstream_wait: float = 0.0  # waiting for containers' response headers, over all attempts
    started: float = field(default_factory=time.perf_counter)

    def name_model(self, name: str) -> None:
        self.model = cut(name)
