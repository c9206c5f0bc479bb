"""The catalog users write, as pydantic types (the YAML shape), and the resolved,
immutable `Catalog` the rest of the program reads.

Field names are those of the README's Catalog section; they are a contract: extend, never rename.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from router.catalog.durations import FOREVER, InvalidDuration, parse_interval, parse_keep_alive
from router.catalog.names import parse_model_name

DEFAULT_IMAGE = "ollama/ollama:0.12.6"
DEFAULT_KEEP_ALIVE = "24h"
DEFAULT_NUM_PARALLEL = 4
OLLAMA_PORT = 11434


class Routing(enum.StrEnum):
    """How the router spreads a model's requests over its containers (README, "Routing policy")."""

    AFFINITY = "affinity"  # a conversation stays on the container that holds its prompt cache
    LEAST_LOADED = "least_loaded"  # the container with the fewest requests in flight
    ROUND_ROBIN = "round_robin"  # each container in turn


def default_routing(containers: int) -> Routing:
    """Affinity where a model has siblings; with one container there is nothing to choose."""
    return Routing.AFFINITY if containers > 1 else Routing.LEAST_LOADED


def _keep_alive(value: Any) -> Any:
    """Refuse what Ollama would refuse, keep the user's spelling."""
    if value is None:
        return value
    if isinstance(value, float) and not math.isfinite(value):
        # YAML's .inf/.nan have no JSON form: Ollama could never be sent them
        raise ValueError(f"keep_alive {value!r} cannot be sent to Ollama: use -1 to keep the model loaded forever")
    try:
        parse_keep_alive(value)
    except InvalidDuration as exc:
        raise ValueError(f"keep_alive {value!r} would be refused by Ollama: {exc}") from None
    return value


def _interval(value: Any) -> Any:
    try:
        return parse_interval(value)
    except InvalidDuration as exc:
        raise ValueError(f"not a duration: {exc}") from None


KeepAlive = Annotated[str | int | float | None, BeforeValidator(_keep_alive)]
Seconds = Annotated[float, BeforeValidator(_interval)]
StrictStrList = list[Annotated[str, Field(strict=True)]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContainerSettings(_Strict):
    """What a container can set; `defaults:` holds the same fields."""

    image: str | None = None
    command: str | list[str] | None = None
    env: dict[str, str | int | float | bool] | None = None
    volumes: list[str] | None = None
    network: str | None = None
    num_parallel: Annotated[int, Field(ge=1, le=256, strict=True)] | None = None
    keep_alive: KeepAlive = None
    max_loaded_models: Annotated[int, Field(ge=0, strict=True)] | None = None


class DefaultsSpec(ContainerSettings):
    pass


class ContainerSpec(ContainerSettings):
    gpus: list[Annotated[int, Field(strict=True)]] | None = None
    url: str | None = None
    port: Annotated[int, Field(ge=1, le=65535, strict=True)] | None = None


class ModelSpec(_Strict):
    containers: Annotated[StrictStrList, Field(min_length=1)]
    aliases: StrictStrList = []
    fallback: StrictStrList = []
    context_length: Annotated[int, Field(ge=1, strict=True)] | None = None
    keep_alive: KeepAlive = None
    owned_by: str | None = None
    capabilities: StrictStrList | None = None
    description: str | None = None
    routing: Routing | None = None


class RouterSpec(_Strict):
    """Router behaviour; every field can be overridden by ROUTER_* (see settings.py)."""

    health_interval: Seconds | None = None
    ttft_timeout: Seconds | None = None
    max_queue: Annotated[int, Field(ge=0, strict=True)] | None = None
    queue_timeout: Seconds | None = None
    failure_threshold: Annotated[int, Field(ge=1, strict=True)] | None = None
    deep_check_interval: Seconds | None = None
    keep_warm: bool | None = None
    pull_missing: bool | None = None
    max_body_bytes: Annotated[int, Field(ge=1, strict=True)] | None = None
    header_timeout: Seconds | None = None
    body_timeout: Seconds | None = None
    cold_load_threshold: Seconds | None = None
    probe_timeout: Seconds | None = None
    connect_timeout: Seconds | None = None
    affinity_max_keys: Annotated[int, Field(ge=1, strict=True)] | None = None
    affinity_max_queue: Annotated[int, Field(ge=0, strict=True)] | None = None


class CatalogSpec(_Strict):
    version: Annotated[int, Field(strict=True, ge=1, le=1)]
    defaults: DefaultsSpec = DefaultsSpec()
    router: RouterSpec = RouterSpec()
    containers: dict[str, ContainerSpec]
    models: dict[str, ModelSpec]


# ---------------------------------------------------------------------------
# The resolved catalog: defaults merged, names normalised, read-only.


@dataclass(frozen=True, slots=True)
class Container:
    name: str
    url: str
    managed: bool
    gpus: tuple[int, ...] = ()
    port: int | None = None
    image: str = DEFAULT_IMAGE
    command: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    volumes: tuple[str, ...] = ()
    network: str = "host"
    num_parallel: int = DEFAULT_NUM_PARALLEL
    keep_alive: str | int | float = DEFAULT_KEEP_ALIVE
    max_loaded_models: int | None = None

    @property
    def listen_port(self) -> int:
        """The port Ollama listens on inside the container's network namespace."""
        if self.network == "host" and self.port is not None:
            return self.port
        return OLLAMA_PORT


@dataclass(frozen=True, slots=True)
class Model:
    tag: str  # the catalog's spelling, normalised to Ollama's display form
    key: str
    containers: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    fallback: tuple[str, ...] = ()  # display tags of other catalog models
    context_length: int | None = None
    keep_alive: str | int | float = DEFAULT_KEEP_ALIVE
    owned_by: str = "library"
    capabilities: tuple[str, ...] = ("completion",)
    description: str | None = None
    routing: Routing = Routing.LEAST_LOADED

    @property
    def keyed(self) -> bool:
        """Its requests are placed by conversation: affinity, and siblings to choose from."""
        return self.routing is Routing.AFFINITY and len(self.containers) > 1

    @property
    def is_embedding(self) -> bool:
        return "embedding" in self.capabilities and "completion" not in self.capabilities

    @property
    def keep_alive_seconds(self) -> float:
        return parse_keep_alive(self.keep_alive)

    @property
    def keeps_forever(self) -> bool:
        return self.keep_alive_seconds == FOREVER


@dataclass(frozen=True, slots=True)
class Catalog:
    path: str
    version: int
    containers: dict[str, Container]
    models: dict[str, Model]  # by model key
    aliases: dict[str, str] = field(default_factory=dict)  # lower-case alias -> model key
    router: dict[str, Any] = field(default_factory=dict)  # the `router:` section, set fields only

    def resolve(self, name: object) -> Model | None:
        """A requested model name or alias to its catalog model (Ollama's lookup rules)."""
        if not isinstance(name, str):
            return None
        alias_target = self.aliases.get(name.strip().lower())
        if alias_target is not None:
            return self.models[alias_target]
        try:
            key = parse_model_name(name).key
        except ValueError:
            return None
        model = self.models.get(key)
        if model is None:
            alias_target = self.aliases.get(key)
            if alias_target is not None:
                return self.models[alias_target]
        return model

    def models_on(self, container: str) -> list[Model]:
        return [m for m in self.models.values() if container in m.containers]
