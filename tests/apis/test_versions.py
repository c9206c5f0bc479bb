"""A container whose Ollama predates an endpoint is never sent it: a sibling or
a fallback that has it serves, else 501 in the API's shape naming the release."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest
import pytest_asyncio

from tests.apis.support import MESSAGES
from tests.harness import RouterFleet, catalog_yaml, router_fleet
from tests.server.support import requests_by_container

pytestmark = pytest.mark.asyncio(loop_scope="module")

CATALOG = catalog_yaml(
    "old", "mid", "new",
    models={
        "llama3.2:3b": "containers: [old, mid]",  # old is its first choice
        "gemma2:2b": "containers: [old], fallback: [qwen2.5:7b]",
        "qwen2.5:7b": "containers: [new]",
    },
)
VERSIONS = {"old": "0.12.6", "mid": "0.13.5", "new": "0.32.15"}  # mid has /v1/responses (0.13.3), not /v1/messages (0.14.0)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet() -> AsyncIterator[RouterFleet]:
    per_container = {name: {"version": version} for name, version in VERSIONS.items()}
    async with router_fleet(CATALOG, per_container=per_container) as running:
        yield running


async def seen_during(fleet: RouterFleet, action: Any) -> tuple[Any, dict[str, int]]:
    before = await requests_by_container(fleet)
    try:
        result = await action()
    except Exception as exc:  # the refusal is the result here
        result = exc
    after = await requests_by_container(fleet)
    return result, {name: after[name] - before[name] for name in after if after[name] != before[name]}


async def test_responses_skip_the_container_too_old_for_them(fleet: RouterFleet) -> None:
    client = openai.AsyncOpenAI(base_url=fleet.url + "/v1", api_key="unused", max_retries=0)
    for _ in range(3):
        raw, seen = await seen_during(fleet, lambda: client.responses.with_raw_response.create(model="llama3.2:3b", input="hi"))
        assert raw.headers["X-Router-Container"] == "mid"
        assert seen == {"mid": 1}


async def test_messages_with_no_container_new_enough_are_501_naming_the_release(fleet: RouterFleet) -> None:
    client = anthropic.AsyncAnthropic(base_url=fleet.url, api_key="unused", max_retries=0)
    refusal, seen = await seen_during(fleet, lambda: client.messages.create(model="llama3.2:3b", max_tokens=8, messages=MESSAGES))
    assert isinstance(refusal, anthropic.APIStatusError) and refusal.status_code == 501
    body: Any = refusal.body
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    assert "0.14.0" in body["error"]["message"] and "old 0.12.6" in body["error"]["message"]
    assert seen == {}  # neither container was sent it


async def test_a_fallback_new_enough_serves_what_the_model_cannot(fleet: RouterFleet) -> None:
    client = anthropic.AsyncAnthropic(base_url=fleet.url, api_key="unused", max_retries=0)
    raw, seen = await seen_during(fleet, lambda: client.messages.with_raw_response.create(model="gemma2:2b", max_tokens=8, messages=MESSAGES))
    assert (await raw.parse()).model == "qwen2.5:7b"
    assert raw.headers["X-Router-Fallback"].startswith("gemma2:2b -> qwen2.5:7b")
    assert seen == {"new": 1}


async def test_transcriptions_are_501_in_openais_shape(fleet: RouterFleet) -> None:
    client = openai.AsyncOpenAI(base_url=fleet.url + "/v1", api_key="unused", max_retries=0)
    refusal, seen = await seen_during(
        fleet, lambda: client.audio.transcriptions.create(model="llama3.2:3b", file=("a.wav", b"RIFF....WAVE"))
    )
    assert isinstance(refusal, openai.APIStatusError) and refusal.status_code == 501
    assert refusal.code == "not_implemented" and "0.20.0" in refusal.message
    assert seen == {}


async def test_the_fleets_version_is_its_oldest(fleet: RouterFleet) -> None:
    async with fleet.session.get(fleet.url + "/api/version") as response:
        assert await response.json() == {"version": "0.12.6"}
