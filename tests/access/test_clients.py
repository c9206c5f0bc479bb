"""Every access rule through the official `openai` and `ollama` clients."""

from __future__ import annotations

import asyncio
import time

import ollama
import openai
import pytest

from tests.access.support import LLAMA, MESSAGES, QWEN, Keyed

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.mark.parametrize("key", [None, "olr-not-a-key", "sk-" + "x" * 48])
async def test_openai_without_a_valid_key_is_401_invalid_api_key(keyed: Keyed, key: str | None) -> None:
    # no key: the SDK insists on one, so its Authorization header is blanked
    client = keyed.openai(key or "unused", default_headers={} if key else {"Authorization": ""})
    with pytest.raises(openai.AuthenticationError) as caught:
        await client.chat.completions.create(model=LLAMA, messages=MESSAGES)
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert key is None or key not in str(caught.value.body)  # the key is never echoed
    with pytest.raises(openai.AuthenticationError):
        await client.models.list()


@pytest.mark.parametrize("key", [None, "olr-not-a-key"])
async def test_ollama_without_a_valid_key_is_401(keyed: Keyed, key: str | None) -> None:
    client = keyed.ollama(key)
    for call in (lambda: client.chat(model=LLAMA, messages=MESSAGES), client.list, lambda: client.show(LLAMA)):
        with pytest.raises(ollama.ResponseError) as caught:
            await call()
        assert caught.value.status_code == 401
        assert "API key" in caught.value.error


async def test_a_valid_key_works_with_both_clients(keyed: Keyed) -> None:
    reply = await keyed.openai("other").chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.choices[0].message.content
    answer = await keyed.ollama("other").chat(model=QWEN, messages=MESSAGES)
    assert answer.message.content


async def test_x_api_key_header_is_accepted(keyed: Keyed) -> None:
    client = openai.AsyncOpenAI(
        base_url=keyed.url + "/v1", api_key="ignored", max_retries=0,
        default_headers={"Authorization": "", "x-api-key": keyed.keys["other"]},
    )
    assert (await client.chat.completions.create(model=LLAMA, messages=MESSAGES)).choices
    native = ollama.AsyncClient(host=keyed.url, headers={"x-api-key": keyed.keys["other"]})
    assert (await native.generate(model=LLAMA, prompt="hi")).response


async def test_allowlist_hides_other_models_in_the_openai_api(keyed: Keyed) -> None:
    client = keyed.openai("team")
    listed = {m.id for m in (await client.models.list()).data}
    assert listed == {LLAMA, "gpt-4o-mini"}
    assert (await client.models.retrieve("gpt-4o-mini")).id == "gpt-4o-mini"
    for name in (QWEN, "gpt-4o", "Qwen2.5:7B"):
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(model=name, messages=MESSAGES)
        assert caught.value.code == "model_not_found"
        assert caught.value.body == (await _unknown_model_body(keyed, name))
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve(name)
    assert (await client.chat.completions.create(model=LLAMA, messages=MESSAGES)).choices


async def _unknown_model_body(keyed: Keyed, name: str) -> object:
    """What a key that may use everything gets for a model that does not exist: the same shape."""
    with pytest.raises(openai.NotFoundError) as caught:
        await keyed.openai("other").chat.completions.create(model="no-such-" + name, messages=MESSAGES)
    body = caught.value.body
    assert isinstance(body, dict)
    return {**body, "message": body["message"].replace("no-such-" + name, name)}


async def test_allowlist_hides_other_models_in_the_ollama_api(keyed: Keyed) -> None:
    client = keyed.ollama("team")
    assert {m.model for m in (await client.list()).models} == {LLAMA}
    assert {m.model for m in (await client.ps()).models} <= {LLAMA}
    for call in (lambda: client.chat(model=QWEN, messages=MESSAGES), lambda: client.show("gpt-4o"),
                 lambda: client.embed(model=QWEN, input="hi")):
        with pytest.raises(ollama.ResponseError) as caught:
            await call()
        assert caught.value.status_code == 404
        assert "not found" in caught.value.error
    assert (await client.chat(model="gpt-4o-mini", messages=MESSAGES)).message.content
    # a key without an allowlist sees every model
    assert {m.model for m in (await keyed.ollama("other").list()).models} == {LLAMA, QWEN}


async def test_rate_limit_is_429_with_retry_after_and_other_keys_are_unaffected(keyed: Keyed) -> None:
    limited = keyed.openai("limited")
    for _ in range(2):  # the burst
        await limited.chat.completions.create(model=LLAMA, messages=MESSAGES)
    with pytest.raises(openai.RateLimitError) as caught:
        await limited.chat.completions.create(model=LLAMA, messages=MESSAGES)
    assert caught.value.status_code == 429
    assert caught.value.code == "rate_limit_exceeded"
    retry_after = int(caught.value.response.headers["Retry-After"])
    assert 1 <= retry_after <= 60  # 1 request per minute
    with pytest.raises(ollama.ResponseError) as native:
        await keyed.ollama("limited").chat(model=LLAMA, messages=MESSAGES)
    assert native.value.status_code == 429
    # another key is unaffected, with either client
    assert (await keyed.openai("other").chat.completions.create(model=LLAMA, messages=MESSAGES)).choices
    assert (await keyed.ollama("other").chat(model=LLAMA, messages=MESSAGES)).message.content


async def test_a_limited_key_is_served_again_once_its_bucket_refills(keyed: Keyed) -> None:
    client = keyed.ollama("fast")
    await client.generate(model=LLAMA, prompt="hi")
    with pytest.raises(ollama.ResponseError) as caught:
        await client.generate(model=LLAMA, prompt="hi")
    assert caught.value.status_code == 429
    deadline = time.monotonic() + 10  # a token every 0.5 s: served again once one came, however long that took here

    async def served() -> bool:
        try:
            return bool((await client.generate(model=LLAMA, prompt="hi")).response)
        except ollama.ResponseError as refused:
            assert refused.status_code == 429 and time.monotonic() < deadline
            return False

    while not await served():
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("path", ["/metrics", "/router/status"])
async def test_admin_paths_need_an_admin_key(keyed: Keyed, path: str) -> None:
    session, url = keyed.fleet.session, keyed.url + path
    async with session.get(url) as response:
        assert response.status == 401
        assert (await response.json())["error"]
    async with session.get(url, headers=keyed.auth("other")) as response:
        assert response.status == 403
        assert "admin" in (await response.json())["error"]
    async with session.get(url, headers={"x-api-key": keyed.keys["admin"]}) as response:
        assert response.status == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_probes_are_open(keyed: Keyed, path: str) -> None:
    async with keyed.fleet.session.get(keyed.url + path) as response:
        assert response.status == 200
    async with keyed.fleet.session.get(keyed.url + path, headers={"Authorization": "Bearer wrong"}) as response:
        assert response.status == 200


async def test_admin_key_may_also_use_models(keyed: Keyed) -> None:
    assert (await keyed.ollama("admin").generate(model=QWEN, prompt="hi")).response


async def test_a_fallback_outside_the_allowlist_is_not_used(keyed: Keyed) -> None:
    """When llama's container fails, a key limited to llama gets the failure, not qwen's answer."""
    llama_backend, qwen_backend = keyed.fleet.backends["a"], keyed.fleet.backends["q"]
    before = (await qwen_backend.stats())["by_model"].get(QWEN, 0)
    await llama_backend.add_fault("error", count=1, status=500, model=LLAMA)
    try:
        with pytest.raises(openai.InternalServerError):
            await keyed.openai("team").chat.completions.create(model=LLAMA, messages=MESSAGES)
        assert (await qwen_backend.stats())["by_model"].get(QWEN, 0) == before
        # a key that may use qwen is served by the fallback when llama fails
        await llama_backend.add_fault("error", count=1, status=500, model=LLAMA)
        raw = await keyed.openai("other").chat.completions.with_raw_response.create(model=LLAMA, messages=MESSAGES)
        assert raw.headers["X-Router-Model"] == QWEN
    finally:
        await llama_backend.clear_faults()
