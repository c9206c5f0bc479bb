"""Ollama model names: grammar, normalisation and the short display form.

Shared by the catalog, the router and the emulator, so all three agree on
which strings name the same model (docs/ollama-wire.md §2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
# The longest string that can name a model: host (350) / namespace (80) / model (80) : tag (80),
# plus surrounding whitespace that parsing strips. Longer names are refused before any lookup.
MAX_NAME_CHARS = 350 + 1 + 80 + 1 + 80 + 1 + 80 + 8

# First char alphanumeric or "_", then alphanumerics, "_", "-"; "." allowed
# everywhere but the namespace; ":" (a port) only in the host.
_PART = r"[A-Za-z0-9_][A-Za-z0-9_\-.]{0,79}"
_HOST_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-.:]{0,349}$")
_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,79}$")
_MODEL_RE = re.compile(rf"^{_PART}$")
_TAG_RE = re.compile(rf"^{_PART}$")


class InvalidModelName(ValueError):
    """The string is not a valid Ollama model name."""


@dataclass(frozen=True, slots=True)
class ModelName:
    host: str
    namespace: str
    model: str
    tag: str

    @property
    def key(self) -> str:
        """Case-insensitive identity: two names with equal keys address the same model."""
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}".lower()

    @property
    def display(self) -> str:
        """Ollama's DisplayShortest: defaults omitted, the tag always shown."""
        if self.host == DEFAULT_HOST and self.namespace == DEFAULT_NAMESPACE:
            return f"{self.model}:{self.tag}"
        if self.host == DEFAULT_HOST:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    @property
    def qualified(self) -> str:
        """Fully qualified, as Ollama prints it in capability errors."""
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    @property
    def owned_by(self) -> str:
        """OpenAI `owned_by` as Ollama derives it: the namespace (or org for hf.co)."""
        return self.namespace


def parse_model_name(raw: str) -> ModelName:
    """Parse `[host/][namespace/]model[:tag]`, raising InvalidModelName."""
    if not isinstance(raw, str):
        raise InvalidModelName("model name must be a string")
    name = raw.strip()
    if not name:
        raise InvalidModelName("empty model name")
    tag = DEFAULT_TAG
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise InvalidModelName(f"invalid tag {tag!r}")
    parts = name.split("/")
    if len(parts) > 3 or any(p == "" for p in parts):
        raise InvalidModelName("empty or extra path part")
    host, namespace = DEFAULT_HOST, DEFAULT_NAMESPACE
    if len(parts) == 3:
        host, namespace, model = parts
    elif len(parts) == 2:
        namespace, model = parts
    else:
        (model,) = parts
    if not _HOST_RE.match(host):
        raise InvalidModelName(f"invalid host {host!r}")
    if not _NAMESPACE_RE.match(namespace):
        raise InvalidModelName(f"invalid namespace {namespace!r}")
    if not _MODEL_RE.match(model):
        raise InvalidModelName(f"invalid model {model!r}")
    return ModelName(host, namespace, model, tag)


def model_key(raw: str) -> str | None:
    """The lookup key of a name, or None when it is not a valid name."""
    try:
        return parse_model_name(raw).key
    except InvalidModelName:
        return None


def display_name(raw: str) -> str:
    """Short display form (`llama3.2` -> `llama3.2:latest`)."""
    return parse_model_name(raw).display


def is_cloud_name(raw: str) -> bool:
    """Whether Ollama would send a request naming `raw` to ollama.com instead of a
    local model (docs/ollama-wire-2026.md §6.1): the text after the last colon is
    `cloud` (any case), or ends in `-cloud` and holds no slash."""
    colon = raw.rfind(":")
    if colon < 0:
        return False
    suffix = raw[colon + 1 :].strip()
    folded = suffix.lower()
    return folded == "cloud" or (folded.endswith("-cloud") and "/" not in suffix)
