"""Context windows pinned per model: no client reloads a warm model by asking for
another num_ctx or shift, and a prompt too long for a model that refuses
overflow is a clear 400 in each API's shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import ollama
import openai
import orjson
import pytest
import pytest_asyncio

from tests.access.support import parse_metrics, sample
from tests.harness import RouterFleet, router_fleet
from tests.server.support import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

CATALOG = """
version: 1
containers:
  a: {gpus: [0], port: 1}
  d: {gpus: [1], port: 2}
models:
  llama3.2:3b: {containers: [a], context_length: 8192}
  deepseek-v3:671b: {containers: [d], context_length: 256, on_overflow: refuse}
"""
LLAMA = "llama3.2:3b"
DEEPSEEK = "deepseek-v3:671b"  # a deepseek2-family model: Ollama never shifts its context, on any API
LOAD_TIME = 1.5  # over the cold-load threshold (1 s): a reload would count as a cold load
LONG = " ".join(["word"] * 600)  # far more tokens than 256


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet() -> AsyncIterator[RouterFleet]:
    # Each emulator's OLLAMA_CONTEXT_LENGTH is what `up` and Compose give it: its models' window.
    per_container = {"a": {"context_length": 8192, "load_time": LOAD_TIME}, "d": {"context_length": 256}}
    async with router_fleet(CATALOG, per_container=per_container, settings={"deep_check_interval": 0.2}) as running:
        await running.wait_warm()
        yield running


async def metrics(fleet: RouterFleet) -> dict[Any, float]:
    async with fleet.session.get(fleet.url + "/metrics") as response:
        return parse_metrics(await response.text())


async def test_three_num_ctx_values_and_a_shift_never_reload_a_warm_model(fleet: RouterFleet) -> None:
    emulator = fleet.backends["a"]
    loads = (await emulator.stats())["loads"]
    requests = (await emulator.stats())["requests"]
    # deep checks (every 0.2 s) run on the pinned window too
    assert await eventually(lambda: _more_requests(fleet, requests + 4), timeout=10)
    client = ollama.AsyncClient(host=fleet.url)
    await client.chat(model=LLAMA, messages=[{"role": "user", "content": "hi"}], options={"num_ctx": 2048})
    await client.generate(model=LLAMA, prompt="hi", options={"num_ctx": 4096, "temperature": 0.5})
    await client.chat(model=LLAMA, messages=[{"role": "user", "content": "hi"}], options={"num_ctx": 32768}, stream=False)
    async with fleet.session.post(fleet.url + "/api/generate", data=orjson.dumps({"model": LLAMA, "prompt": "hi", "shift": False})) as response:
        assert response.status == 200
    gpt = openai.AsyncOpenAI(base_url=fleet.url + "/v1", api_key="unused", max_retries=0)
    assert (await gpt.chat.completions.create(model=LLAMA, messages=[{"role": "user", "content": "hi"}])).choices
    assert (await emulator.stats())["loads"] == loads
    samples = await metrics(fleet)
    assert sample(samples, "ollama_router_cold_loads_total", model=LLAMA, container="a") == 0
    assert sample(samples, "ollama_router_pinned_requests_total", model=LLAMA) == 4
    ps = await emulator.request("GET", "/api/ps")
    assert [m["context_length"] for m in ps["models"]] == [8192]
    # the same asked of the container directly does reload it: what the router prevented
    direct = ollama.AsyncClient(host=emulator.url)
    reply = await direct.generate(model=LLAMA, prompt="hi", options={"num_ctx": 2048})
    assert (await emulator.stats())["loads"] == loads + 1 and reply.load_duration and reply.load_duration > 1e9


async def _more_requests(fleet: RouterFleet, at_least: int) -> bool:
    return bool((await fleet.backends["a"].stats())["requests"] >= at_least)


async def test_a_second_spelling_of_options_is_refused(fleet: RouterFleet) -> None:
    body = orjson.dumps({"model": LLAMA, "prompt": "hi", "options": {"num_ctx": 8192}, "Options": {"num_ctx": 2048}})
    async with fleet.session.post(fleet.url + "/api/generate", data=body) as response:
        assert response.status == 400
        assert "Options" in (await response.json())["error"]


async def test_a_prompt_longer_than_the_window_is_a_400_in_each_apis_shape(fleet: RouterFleet) -> None:
    too_long = "the prompt is longer than the context length"
    loads = (await fleet.backends["d"].stats())["loads"]
    native = ollama.AsyncClient(host=fleet.url)
    with pytest.raises(ollama.ResponseError) as refused:
        # the client asks for the shift on: the router sends the model's (off)
        await native.chat(model=DEEPSEEK, messages=[{"role": "user", "content": LONG}], options={"num_ctx": 100000})
    assert refused.value.status_code == 400 and refused.value.error.startswith(too_long)
    gpt = openai.AsyncOpenAI(base_url=fleet.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as chat:
        await gpt.chat.completions.create(model=DEEPSEEK, messages=[{"role": "user", "content": LONG}])
    assert chat.value.code == "context_length_exceeded" and chat.value.param == "messages"
    assert too_long in chat.value.message
    with pytest.raises(openai.BadRequestError) as responses:
        await gpt.responses.create(model=DEEPSEEK, input=LONG)
    assert responses.value.code == "context_length_exceeded" and responses.value.param == "input"
    claude = anthropic.AsyncAnthropic(base_url=fleet.url, api_key="unused", max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as messages:
        await claude.messages.create(model=DEEPSEEK, max_tokens=8, messages=[{"role": "user", "content": LONG}], stream=True)
    body: Any = messages.value.body
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["message"].startswith(too_long)
    assert body["request_id"].startswith("req_")
    async with aiohttp.ClientSession() as session:
        shifted = orjson.dumps({"model": DEEPSEEK, "prompt": LONG, "stream": False, "shift": True})
        async with session.post(fleet.url + "/api/generate", data=shifted) as response:
            assert response.status == 400  # the shift stays off: the model's setting, not the client's
    assert (await fleet.backends["d"].stats())["loads"] == loads  # refusing reloaded nothing
    assert (await native.chat(model=DEEPSEEK, messages=[{"role": "user", "content": "hi"}])).message.content


UNMANAGED = """
version: 1
containers:
  u: {gpus: [0], port: 1}
models:
  llama3.2:3b: {containers: [u], context_length: 8192}
"""


async def test_the_routers_own_loads_use_the_pinned_window_whatever_the_containers_default() -> None:
    """A container without OLLAMA_CONTEXT_LENGTH (its default here: 4096) still loads the model
    at the catalog's window: the preload says so, and native requests that name none keep it."""
    async with router_fleet(UNMANAGED, per_container={"u": {"context_length": 0}}) as fleet:
        await fleet.wait_warm()
        emulator = fleet.backends["u"]
        ps = await emulator.request("GET", "/api/ps")
        assert [m["context_length"] for m in ps["models"]] == [8192]
        loads = (await emulator.stats())["loads"]
        client = ollama.AsyncClient(host=fleet.url)
        await client.generate(model=LLAMA, prompt="hi")
        await client.embed(model=LLAMA, input="hi")
        assert (await emulator.stats())["loads"] == loads
        samples = await metrics(fleet)
        assert sample(samples, "ollama_router_pinned_requests_total", model=LLAMA) == 0  # added, not replaced
