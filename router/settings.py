"""Router settings: command-line flags, then ROUTER_* environment, then the
catalog's `router:` section, then these defaults (first wins)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from router.catalog.durations import parse_interval
from router.catalog.placement import check_redis_url

Seconds = Annotated[float, BeforeValidator(parse_interval)]
RedisUrl = Annotated[str, AfterValidator(check_redis_url)]


class _CatalogSection(PydanticBaseSettingsSource):
    """The catalog's `router:` section as a settings source."""

    def __init__(self, settings_cls: type[BaseSettings], section: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._section = section

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._section.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._section.items() if k in self.settings_cls.model_fields}


class RouterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTER_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=256)
    log_format: str = Field("json", pattern="^(json|console)$")
    log_level: str = "info"
    log_bodies: bool = False

    # behaviour, also settable in the catalog's router: section
    health_interval: Seconds = 5.0
    ttft_timeout: Seconds = 60.0
    max_queue: int = Field(32, ge=0)
    queue_timeout: Seconds = 30.0
    failure_threshold: int = Field(3, ge=1)
    deep_check_interval: Seconds = 0.0  # 0 = off
    keep_warm: bool = True
    pull_missing: bool = True
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1)
    probe_timeout: Seconds = 3.0
    connect_timeout: Seconds = 2.0
    # against slow clients: a request's headers (also the idle keep-alive time) and its body
    header_timeout: Seconds = Field(30.0, gt=0)
    body_timeout: Seconds = Field(60.0, gt=0)
    cold_load_threshold: Seconds = 1.0  # a load_duration above this counts as a cold load

    api_keys_file: str | None = None

    # Deployment: how many router replicas `ollama-router k8s` renders, and the Redis
    # they share (rendered into their catalog; the router itself does not use it yet).
    replicas: int = Field(1, ge=1)
    redis_url: RedisUrl | None = None

    catalog_section: ClassVar[dict[str, Any]] = {}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _CatalogSection(settings_cls, cls.catalog_section))

    @classmethod
    def load(cls, catalog_section: dict[str, Any] | None = None, **flags: Any) -> RouterSettings:
        """Flags given as None are treated as not given."""
        given = {k: v for k, v in flags.items() if v is not None}
        scoped = type(cls.__name__, (cls,), {"catalog_section": dict(catalog_section or {})})
        return scoped(**given)
