"""Context windows pinned per model, and prompts too long for them.

Ollama reloads a loaded model when a request resolves its `num_ctx` or its
context `shift` differently from the loaded runner (docs/ollama-wire-2026.md
§7.2): one client asking for another window unloads a warm model for
everyone. For a catalog model with `context_length` (or `on_overflow:
refuse`) the router therefore sends every native request with the model's
own settings, the same ones its keep-warm pings load it with
(`Model.load_options`): `options.num_ctx` set to the catalog's, `shift`
false for `refuse` and left to Ollama's default otherwise. What it replaced
is logged (`Record.pinned`) and counted.

A prompt longer than the window is cut by Ollama unless the context shift
is off, in which case it answers a 400 (§7.3, §7.4); the router answers that
refusal in the API's own shape (`ContextLengthExceeded`).
"""

from __future__ import annotations

from typing import Any

import orjson

from router.catalog import Model
from router.http.errors import ContextLengthExceeded

# The native endpoints whose bodies carry runner options; only chat and generate have `shift`.
PINNED_PATHS = frozenset({"/api/chat", "/api/generate", "/api/embed", "/api/embeddings"})
SHIFT_PATHS = frozenset({"/api/chat", "/api/generate"})
RUNNER_FIELDS = ("options", "shift")  # whose case variants Go would merge: refused (router.http.body)

# How Ollama (and the servers it runs) say a prompt does not fit (docs/ollama-wire-2026.md §7.3, §7.4).
OVERFLOW_MARKS = (
    "the prompt is longer than the context length",
    "the input length exceeds the context length",
    "input exceeds maximum context length",
    "exceeds the available context size",
    "exceeds the model's maximum context length",
)
# Which request field held the text that did not fit, per endpoint (OpenAI's `param`).
OVERFLOW_PARAM = {"/v1/completions": "prompt", "/v1/embeddings": "input", "/v1/responses": "input"}
REFUSAL_MAX_BYTES = 64 * 1024  # a 400 body read to look for the overflow message; Ollama's are a few hundred

_UNSET = object()


def pinned(model: Model) -> bool:
    return model.context_length is not None or model.on_overflow == "refuse"


def pin_runner_options(payload: dict[str, Any], model: Model, path: str) -> tuple[dict[str, Any], str | None] | None:
    """`payload` with `model`'s pinned runner settings, and a note of the client's values
    it replaced (None when it only added them); None when nothing had to change."""
    changed: dict[str, Any] = {}
    notes: list[str] = []
    num_ctx = model.context_length
    if num_ctx is not None:
        options = payload.get("options")
        if isinstance(options, dict) or options is None:  # another type: Ollama refuses the request itself
            asked = options.get("num_ctx") if options else None
            if asked is None or isinstance(asked, bool) or asked != num_ctx:
                changed["options"] = {**(options or {}), "num_ctx": num_ctx}
                if asked is not None:
                    notes.append(f"num_ctx {_shown(asked)}->{num_ctx}")
    drop_shift = False
    if path in SHIFT_PATHS:
        asked_shift = payload.get("shift", _UNSET)
        asked_shift = _UNSET if asked_shift is None else asked_shift  # null is Ollama's default too
        if model.on_overflow == "refuse":
            if asked_shift is not False:
                changed["shift"] = False
                if asked_shift is not _UNSET:
                    notes.append(f"shift {_shown(asked_shift)}->false")
        elif asked_shift is not _UNSET:
            drop_shift = True
            notes.append(f"shift {_shown(asked_shift)}->default")
    if not changed and not drop_shift:
        return None
    result = {k: v for k, v in payload.items() if not (drop_shift and k == "shift")}
    result.update(changed)
    return result, ", ".join(notes) or None


def _shown(value: object) -> str:
    return orjson.dumps(value).decode()[:32]


def overflow_refusal(body: bytes, path: str) -> ContextLengthExceeded | None:
    """The router's error for a container's 400 that says the prompt did not fit, else None."""
    if not any(mark.encode() in body for mark in OVERFLOW_MARKS):
        return None
    message = _error_message(body)
    if message is None or not any(mark in message for mark in OVERFLOW_MARKS):
        return None
    error = ContextLengthExceeded(message)
    error.param = OVERFLOW_PARAM.get(path, error.param)
    return error


def _error_message(body: bytes) -> str | None:
    """The message of an error body in any of the shapes Ollama answers with
    (native `{"error": "..."}`, OpenAI's and Anthropic's envelopes)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    return error if isinstance(error, str) else None
