"""Router settings: command-line flags, then ROUTER_* environment, then the
catalog's `router:` section, then these defaults (first wins).

`RouterSettings.load` composes those layers explicitly, so a reload can build
new settings from a new catalog the same way `serve` built the first ones.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from router.catalog.durations import parse_interval
from router.catalog.placement import check_redis_url

Seconds = Annotated[float, BeforeValidator(parse_interval)]
RedisUrl = Annotated[str, AfterValidator(check_redis_url)]


def _comma_list(value: Any) -> Any:
    """`a, b` from the environment or a flag; a YAML list as it is."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CommaList = Annotated[list[str], NoDecode, BeforeValidator(_comma_list)]


# Settings a running router cannot change: a reload reports them as needing a restart.
RESTART_ONLY = frozenset({
    "host", "port", "workers", "log_format", "log_level", "api_keys_file", "watch", "max_body_bytes", "header_timeout",
    "redis_url", "redis_prefix", "redis_failure", "redis_lease",
})


class RouterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTER_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=256)
    log_format: str = Field("json", pattern="^(json|console)$")
    log_level: str = "info"
    log_bodies: bool = False
    watch: bool = False  # reload the catalog (and keys file) when it changes on disk

    # behaviour, also settable in the catalog's router: section
    health_interval: Seconds = 5.0
    ttft_timeout: Seconds = 60.0
    stream_idle_timeout: Seconds = Field(60.0, ge=0)  # no upstream bytes for this long ends a stream (0 = never)
    max_queue: int = Field(32, ge=0)
    queue_timeout: Seconds = 30.0
    failure_threshold: int = Field(3, ge=1)
    base_ejection_time: Seconds = Field(5.0, gt=0)
    max_ejection_time: Seconds = Field(300.0, gt=0)
    deep_check_interval: Seconds = 0.0  # 0 = off
    keep_warm: bool = True
    load_timeout: Seconds = Field(300.0, gt=0)  # a keep-warm ping before any load time was seen there
    pull_missing: bool = True
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1)
    probe_timeout: Seconds = 3.0
    connect_timeout: Seconds = 2.0
    # against slow clients: a request's headers (also the idle keep-alive time) and its body
    header_timeout: Seconds = Field(30.0, gt=0)
    body_timeout: Seconds = Field(60.0, gt=0)
    cold_load_threshold: Seconds = 1.0  # a load_duration above this counts as a cold load
    # /router/events: a comment line at least this often (proxies and scripts see a live stream even when
    # nothing happens), and the fleet's snapshot this often (the console redraws from it)
    events_heartbeat: Seconds = Field(15.0, gt=0, le=15)
    snapshot_interval: Seconds = Field(1.0, gt=0, le=1)
    # prefix affinity (README, "Routing policy"): conversations remembered, and the queue a
    # conversation's container may have before its next turn goes to a sibling
    affinity_max_keys: int = Field(65536, ge=1)
    affinity_max_queue: int = Field(0, ge=0)
    allowed_origins: CommaList = Field(default_factory=list)  # browser origins besides the local ones (like OLLAMA_ORIGINS)

    api_keys_file: str | None = None

    # Deployment: how many router replicas `ollama-router k8s` renders
    replicas: int = Field(1, ge=1)
    # limits shared by every router process naming this Redis (replicas, workers); None: each process its own
    redis_url: RedisUrl | None = None
    redis_prefix: str = Field("ollama-router", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")  # one per catalog/cluster sharing a Redis
    redis_failure: Literal["open", "closed"] = "open"  # Redis lost: local limits per process (open) or 503 (closed)
    redis_lease: Seconds = Field(10.0, ge=1.0, le=3600.0)  # a dead process's slots come free this long after it stopped renewing

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # `load` layers the environment and the catalog itself

    @classmethod
    def load(cls, catalog_section: dict[str, Any] | None = None, **flags: Any) -> RouterSettings:
        """Flags given as None are treated as not given."""
        section = {k: v for k, v in (catalog_section or {}).items() if k in cls.model_fields}
        environment = EnvSettingsSource(cls)()
        given = {k: v for k, v in flags.items() if v is not None}
        return cls(**{**section, **environment, **given})

    def restart_needed(self, new: RouterSettings) -> list[str]:
        """The settings that differ in `new` but take effect only at a restart."""
        return sorted(name for name in RESTART_ONLY if getattr(self, name) != getattr(new, name))
