"""The catalog users write, as pydantic types (the YAML shape), and the resolved,
immutable `Catalog` the rest of the program reads.

Field names are those of the README's Catalog section; they are a contract: extend, never rename.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from router.catalog.durations import FOREVER, InvalidDuration, parse_interval, parse_keep_alive
from router.catalog.names import is_cloud_name, parse_model_name
from router.catalog.placement import (
    check_address,
    check_docker_url,
    check_label_key,
    check_label_value,
    check_quantity,
    check_redis_url,
    is_ip,
)

DEFAULT_IMAGE = "ollama/ollama:0.32.15"
DEFAULT_KEEP_ALIVE = "24h"
DEFAULT_NUM_PARALLEL = 4
OLLAMA_PORT = 11434
# Containers without `host:` run on the engine DOCKER_HOST (or the default socket)
# names; a `hosts:` entry of this name overrides it.
LOCAL_HOST = "local"


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
StrictStr = Annotated[str, Field(strict=True)]
StrictStrList = list[StrictStr]
DockerUrl = Annotated[str, Field(strict=True), AfterValidator(check_docker_url)]
Address = Annotated[str, Field(strict=True), AfterValidator(check_address)]
LabelKey = Annotated[str, Field(strict=True), AfterValidator(check_label_key)]
LabelValue = Annotated[str, Field(strict=True), AfterValidator(check_label_value)]
Quantity = Annotated[str, Field(strict=True), AfterValidator(check_quantity)]
RedisUrl = Annotated[str, Field(strict=True), AfterValidator(check_redis_url)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TolerationSpec(_Strict):
    """A Kubernetes toleration, with Kubernetes' own field names and values."""

    key: LabelKey | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: LabelValue | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


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
    # Kubernetes placement (`ollama-router k8s`); Docker ignores them.
    node_selector: dict[LabelKey, LabelValue] | None = None
    tolerations: list[TolerationSpec] | None = None
    storage: Quantity | None = None  # a PersistentVolumeClaim of this size for the models


class DefaultsSpec(ContainerSettings):
    pass


class ContainerSpec(ContainerSettings):
    gpus: list[Annotated[int, Field(strict=True)]] | None = None
    url: str | None = None
    port: Annotated[int, Field(ge=1, le=65535, strict=True)] | None = None
    host: StrictStr | None = None  # a name in `hosts:`; default: the local engine


class TlsSpec(_Strict):
    """Files for a tcp:// engine with TLS, as docker-py's TLSConfig takes them
    (relative paths are relative to the catalog file)."""

    ca: StrictStr | None = None  # verify the engine against this CA (default: the system's CAs)
    cert: StrictStr | None = None  # client certificate ...
    key: StrictStr | None = None  # ... and its key


class HostSpec(_Strict):
    docker: DockerUrl  # unix:///var/run/docker.sock, tcp://box2:2376, ssh://ops@box3
    address: Address  # where the router reaches this host's containers
    tls: TlsSpec | None = None


class ModelSpec(_Strict):
    containers: Annotated[StrictStrList, Field(min_length=1)]
    aliases: StrictStrList = []
    fallback: StrictStrList = []
    context_length: Annotated[int, Field(ge=1, strict=True)] | None = None
    on_overflow: Literal["truncate", "refuse"] | None = None
    keep_alive: KeepAlive = None
    owned_by: str | None = None
    capabilities: StrictStrList | None = None
    description: str | None = None
    routing: Routing | None = None


class RouterSpec(_Strict):
    """Router behaviour; every field can be overridden by ROUTER_* (see settings.py)."""

    health_interval: Seconds | None = None
    ttft_timeout: Seconds | None = None
    stream_idle_timeout: Seconds | None = None
    max_queue: Annotated[int, Field(ge=0, strict=True)] | None = None
    queue_timeout: Seconds | None = None
    failure_threshold: Annotated[int, Field(ge=1, strict=True)] | None = None
    base_ejection_time: Seconds | None = None
    max_ejection_time: Seconds | None = None
    deep_check_interval: Seconds | None = None
    keep_warm: bool | None = None
    load_timeout: Seconds | None = None
    pull_missing: bool | None = None
    max_body_bytes: Annotated[int, Field(ge=1, strict=True)] | None = None
    header_timeout: Seconds | None = None
    body_timeout: Seconds | None = None
    cold_load_threshold: Seconds | None = None
    probe_timeout: Seconds | None = None
    connect_timeout: Seconds | None = None
    allowed_origins: StrictStrList | None = None  # browser origins besides the local ones (like OLLAMA_ORIGINS)
    # Deployment: router replicas (`ollama-router k8s`) and the Redis they share
    replicas: Annotated[int, Field(ge=1, strict=True)] | None = None
    redis_url: RedisUrl | None = None
    events_heartbeat: Annotated[Seconds, Field(gt=0, le=15)] | None = None  # /router/events: a comment at least this often
    snapshot_interval: Annotated[Seconds, Field(gt=0, le=1)] | None = None  # /router/events: the fleet's snapshot this often
    redis_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] | None = None
    redis_failure: Literal["open", "closed"] | None = None
    redis_lease: Seconds | None = None
    affinity_max_keys: Annotated[int, Field(ge=1, strict=True)] | None = None
    affinity_max_queue: Annotated[int, Field(ge=0, strict=True)] | None = None


class CatalogSpec(_Strict):
    version: Annotated[int, Field(strict=True, ge=1, le=1)]
    defaults: DefaultsSpec = DefaultsSpec()
    router: RouterSpec = RouterSpec()
    hosts: dict[str, HostSpec] = {}
    containers: dict[str, ContainerSpec]
    models: dict[str, ModelSpec]


# ---------------------------------------------------------------------------
# The resolved catalog: defaults merged, names normalised, read-only.


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca: str | None = None
    cert: str | None = None
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Host:
    """A Docker engine and the address its containers are reached at."""

    name: str
    docker: str | None  # None: the local engine (DOCKER_HOST, else the default socket)
    address: str = "127.0.0.1"
    tls: TlsFiles | None = None

    @property
    def bind(self) -> str:
        """Where this host's Ollama servers listen (or are published): the address when it
        is an IP, so nothing else on the box reaches them; else every interface."""
        return self.address if is_ip(self.address) else "0.0.0.0"


LOCAL = Host(LOCAL_HOST, docker=None)


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str | None = None
    operator: str | None = None
    value: str | None = None
    effect: str | None = None


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
    host: str = LOCAL_HOST
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    storage: str | None = None
    context_length: int | None = None  # the one its models pin (they agree: the loader checks)

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
    on_overflow: str = "truncate"  # or "refuse": a prompt longer than the window is an error, not cut
    routing: Routing = Routing.LEAST_LOADED

    @property
    def keyed(self) -> bool:
        """Its requests are placed by conversation: affinity, and siblings to choose from."""
        return self.routing is Routing.AFFINITY and len(self.containers) > 1

    @property
    def is_embedding(self) -> bool:
        return "embedding" in self.capabilities and "completion" not in self.capabilities

    @property
    def is_cloud(self) -> bool:
        """Named as Ollama's cloud models are: served by ollama.com through its containers."""
        return is_cloud_name(self.tag)

    @property
    def pins_shift(self) -> bool:
        """Its loads fix the context shift: off for `refuse`, else Ollama's default
        (a request may not toggle it: that reloads the runner, docs/ollama-wire-2026.md §7.2)."""
        return self.on_overflow == "refuse" or self.context_length is not None

    def load_options(self) -> dict[str, Any]:
        """What the router's own requests (keep-warm, preload, deep checks) add so that
        they load the model exactly as the requests it pins are served."""
        extra: dict[str, Any] = {}
        if self.context_length is not None:
            extra["options"] = {"num_ctx": self.context_length}
        if self.on_overflow == "refuse" and not self.is_embedding:
            extra["shift"] = False
        return extra

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
    hosts: dict[str, Host] = field(default_factory=dict)  # the `hosts:` section

    def host_of(self, container: Container) -> Host:
        return self.hosts.get(container.host, LOCAL)

    def docker_hosts(self) -> list[Host]:
        """The hosts whose Docker engines `up`, `down` and `status` visit: every declared
        host, and the local engine when a managed container has no host (or none is declared)."""
        hosts = list(self.hosts.values())
        uses_local = any(c.managed and c.host == LOCAL_HOST for c in self.containers.values())
        if LOCAL_HOST not in self.hosts and (uses_local or not self.hosts):
            hosts.insert(0, LOCAL)
        return hosts

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
