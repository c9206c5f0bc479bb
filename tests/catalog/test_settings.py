"""Router settings: command-line flags, then ROUTER_* environment, then the
catalog's router: section, then defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.catalog.loader import load_catalog
from router.settings import RouterSettings

SECTION = {"health_interval": "2s", "max_queue": 9, "keep_warm": False}


@pytest.mark.parametrize(
    ("section", "env", "flags", "expected"),
    [
        ({}, {}, {}, {"health_interval": 5.0, "max_queue": 32, "keep_warm": True}),
        (SECTION, {}, {}, {"health_interval": 2.0, "max_queue": 9, "keep_warm": False}),
        (SECTION, {"ROUTER_HEALTH_INTERVAL": "7s", "ROUTER_KEEP_WARM": "true"}, {},
         {"health_interval": 7.0, "max_queue": 9, "keep_warm": True}),
        (SECTION, {"ROUTER_MAX_QUEUE": "4"}, {"max_queue": 1, "health_interval": 0.5},
         {"health_interval": 0.5, "max_queue": 1, "keep_warm": False}),
        (SECTION, {"ROUTER_MAX_QUEUE": "4"}, {"max_queue": None}, {"max_queue": 4}),  # a flag left unset
        ({}, {"router_max_queue": "6"}, {}, {"max_queue": 6}),  # env names ignore case
    ],
    ids=["defaults", "catalog", "env-over-catalog", "flags-over-env", "unset-flag", "env-lower-case"],
)
def test_precedence(
    monkeypatch: pytest.MonkeyPatch, section: dict[str, object], env: dict[str, str], flags: dict[str, object],
    expected: dict[str, object],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = RouterSettings.load(section, **flags)
    assert {name: getattr(settings, name) for name in expected} == expected


def test_catalog_router_section_reaches_the_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text((Path(__file__).resolve().parents[2] / "catalog" / "4gpu.yaml").read_text()
                    .replace("ttft_timeout: 60s", "ttft_timeout: 1m30s"))
    section = load_catalog(path).catalog.router
    monkeypatch.setenv("ROUTER_QUEUE_TIMEOUT", "45s")
    settings = RouterSettings.load(section)
    assert (settings.ttft_timeout, settings.queue_timeout, settings.max_queue) == (90.0, 45.0, 32)


def test_one_catalog_does_not_leak_into_the_next_load() -> None:
    RouterSettings.load({"max_queue": 1})
    assert RouterSettings.load({}).max_queue == 32


def test_bad_environment_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("ROUTER_HEALTH_INTERVAL", "soon")
    with pytest.raises(ValidationError, match="health_interval"):
        RouterSettings.load({})


def test_every_catalog_router_key_is_a_setting() -> None:
    """A key the catalog's router: section accepts must change a setting, or users are misled."""
    from router.catalog.model import RouterSpec
    from router.settings import RouterSettings

    assert set(RouterSpec.model_fields) <= set(RouterSettings.model_fields)


def test_catalog_router_section_reaches_the_timeouts() -> None:
    from router.catalog import parse_catalog
    from router.settings import RouterSettings

    text = "version: 1\nrouter: {probe_timeout: 7s, connect_timeout: 250ms}\ncontainers: {a: {port: 1}}\nmodels: {m: {containers: [a]}}\n"
    settings = RouterSettings.load(parse_catalog(text, "c.yaml").catalog.router)
    assert (settings.probe_timeout, settings.connect_timeout) == (7.0, 0.25)


def test_ejection_and_stream_idle_settings_come_from_the_catalog_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from router.catalog import parse_catalog

    text = (
        "version: 1\nrouter: {stream_idle_timeout: 2m, base_ejection_time: 10s, max_ejection_time: 10m, load_timeout: 90s}\n"
        "containers: {a: {port: 1}}\nmodels: {m: {containers: [a]}}\n"
    )
    section = parse_catalog(text, "c.yaml").catalog.router
    settings = RouterSettings.load(section)
    assert (settings.stream_idle_timeout, settings.base_ejection_time, settings.max_ejection_time, settings.load_timeout) == (
        120.0, 10.0, 600.0, 90.0,
    )
    defaults = RouterSettings.load({})
    assert (defaults.stream_idle_timeout, defaults.base_ejection_time, defaults.max_ejection_time) == (60.0, 5.0, 300.0)
    monkeypatch.setenv("ROUTER_STREAM_IDLE_TIMEOUT", "0")  # 0: streams are never ended for idleness
    assert RouterSettings.load(section).stream_idle_timeout == 0.0


@pytest.mark.parametrize("field", ["stream_idle_timeout", "base_ejection_time", "max_ejection_time"])
def test_ejection_and_stream_idle_settings_refuse_what_is_not_a_duration(field: str) -> None:
    from router.catalog import parse_catalog
    from router.catalog.loader import CatalogError

    text = f"version: 1\nrouter: {{{field}: soon}}\ncontainers: {{a: {{port: 1}}}}\nmodels: {{m: {{containers: [a]}}}}\n"
    with pytest.raises(CatalogError, match=field):
        parse_catalog(text, "c.yaml")


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://user:secret@redis.internal:6380/2", "unix:///run/redis.sock"])
def test_redis_urls_redis_py_opens_are_accepted(url: str) -> None:
    assert RouterSettings.load({}, redis_url=url).redis_url == url


@pytest.mark.parametrize("url", ["localhost:6379", "http://redis:6379", "redis://", "6379"])
def test_a_redis_url_redis_py_cannot_open_is_refused_by_name(url: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="redis_url"):
        RouterSettings.load({}, redis_url=url)


def test_redis_settings_come_from_the_catalog_and_need_a_restart() -> None:
    section = {"redis_url": "redis://r:6379/0", "redis_prefix": "team-a", "redis_failure": "closed", "redis_lease": "30s"}
    settings = RouterSettings.load(section)
    assert (settings.redis_url, settings.redis_prefix, settings.redis_failure, settings.redis_lease) == (
        "redis://r:6379/0", "team-a", "closed", 30.0)
    moved = RouterSettings.load({**section, "redis_url": "redis://elsewhere:6379/0", "redis_failure": "open"})
    assert settings.restart_needed(moved) == ["redis_failure", "redis_url"]
