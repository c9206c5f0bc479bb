"""Which models the keep-warm task re-pings after a probe, and how `/api/ps` is read (no network)."""

from __future__ import annotations

import asyncio
import textwrap
import time

import pytest

from router.catalog import Model, parse_catalog
from router.catalog.names import model_key
from router.events import EventHub
from router.fleet.fleet import Fleet
from router.fleet.health import loaded_models, parse_timestamp
from router.fleet.keepwarm import KeepWarm, ping_request
from router.fleet.state import ContainerState, LoadedModel, Phase
from tests.harness import fleet_of

CATALOG = """
version: 1
containers:
  a: {gpus: [0], port: 11001}
models:
  llama3.2:3b: {containers: [a]}
  qwen2.5:7b: {containers: [a], keep_alive: -1}
  nomic-embed-text: {containers: [a], capabilities: [embedding]}
"""


class RecordingKeepWarm(KeepWarm):
    """Records pings instead of sending them."""

    def __init__(self, fleet: Fleet) -> None:
        super().__init__(fleet, EventHub(), margin=30)
        self.pinged: list[str] = []

    async def ping(self, state: ContainerState, model: Model) -> bool:
        self.pinged.append(model.tag)
        return True


def setup() -> tuple[Fleet, ContainerState, dict[str, Model]]:
    catalog = parse_catalog(textwrap.dedent(CATALOG), "unit.yaml").catalog
    fleet = fleet_of(catalog, max_queue=4)
    state = fleet.containers["a"]
    fleet.probe_passed(state, version="0.32.15", loaded={}, tags=[])
    return fleet, state, {m.tag.split(":")[0]: m for m in catalog.models.values()}


def loaded(state: ContainerState, model: Model, expires_in: float | None) -> None:
    expires_at = None if expires_in is None else time.time() + expires_in
    state.loaded[model.key] = LoadedModel(name=model.tag, key=model.key, expires_at=expires_at)  # as /api/ps said


async def test_missing_and_expiring_models_are_pinged_others_left_alone() -> None:
    fleet, state, models = setup()
    keepwarm = RecordingKeepWarm(fleet)
    loaded(state, models["llama3.2"], 10)  # expires within the 30s margin
    loaded(state, models["qwen2.5"], 5)  # kept forever by the catalog: a stale expiry is not acted on
    await keepwarm.after_probe(state)  # nomic-embed-text is missing
    await asyncio.sleep(0)
    assert sorted(keepwarm.pinged) == sorted([models["llama3.2"].tag, models["nomic-embed-text"].tag])

    keepwarm.pinged.clear()
    loaded(state, models["llama3.2"], 3600)
    loaded(state, models["nomic-embed-text"], 3600)
    await keepwarm.after_probe(state)
    await asyncio.sleep(0)
    assert keepwarm.pinged == []


async def test_a_down_container_is_not_pinged() -> None:
    fleet, state, _ = setup()
    fleet.probe_failed(state, "refused")
    assert state.phase is Phase.DOWN
    keepwarm = RecordingKeepWarm(fleet)
    await keepwarm.after_probe(state)
    await asyncio.sleep(0)
    assert keepwarm.pinged == []


async def test_one_ping_at_a_time_per_model_and_container() -> None:
    fleet, state, models = setup()
    gate = asyncio.Event()

    class Slow(RecordingKeepWarm):
        async def ping(self, state: ContainerState, model: Model) -> bool:
            self.pinged.append(model.tag)
            await gate.wait()
            return True

    keepwarm = Slow(fleet)
    first = keepwarm.ping_in_background(state, models["llama3.2"])
    assert keepwarm.ping_in_background(state, models["llama3.2"]) is first
    gate.set()
    await first
    await keepwarm.stop()
    assert keepwarm.pinged == [models["llama3.2"].tag]


def test_ping_bodies_load_without_generating_with_the_catalogs_keep_alive() -> None:
    _, _, models = setup()
    assert ping_request(models["llama3.2"]) == ("/api/generate", b'{"model":"llama3.2:3b","keep_alive":"24h"}')
    path, body = ping_request(models["nomic-embed-text"])
    assert path == "/api/embed" and b'"input":[]' in body


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-22T03:04:05.123456789Z", 1795316645.123456),
        ("2026-11-22T04:04:05.5+01:00", 1795316645.5),  # Ollama prints its local zone
        ("2026-11-21T20:04:05.123456789-07:00", 1795316645.123456),
        ("2318-01-01T00:00:00Z", 10981785600.0),  # keep_alive -1
        ("not a time", None),
        (None, None),
    ],
)
def test_expires_at_from_go_timestamps(text: str | None, expected: float | None) -> None:
    result = parse_timestamp(text)
    assert result == pytest.approx(expected) if expected is not None else result is None


def test_api_ps_entries_by_model_key() -> None:
    ps = {"models": [{"model": "LLaMA3.2:3B", "expires_at": "2026-11-22T03:04:05Z", "size_vram": 7}, {"name": "qwen2.5:7b"}]}
    entries = loaded_models(ps)
    llama, qwen = model_key("llama3.2:3b"), model_key("qwen2.5:7b")
    assert set(entries) == {llama, qwen}
    assert entries[llama].size_vram == 7 and entries[qwen].expires_at is None
