"""The OpenAI API through the official `openai` client: every endpoint, aliases,
any spelling of a name, and the request reaching a container of that model."""

from __future__ import annotations

import openai
import pytest

from tests.harness import RouterFleet
from tests.server.support import CONTAINERS_OF, EMBED, LLAMA, MESSAGES, QWEN, TAGS, openai_client, served_by

pytestmark = pytest.mark.asyncio(loop_scope="module")

# (name the client sends, catalog tag it means)
NAMES = [
    (LLAMA, LLAMA),
    ("gpt-4o-mini", LLAMA),
    ("LLaMA3.2:3B", LLAMA),
    ("GPT-4o-Mini", LLAMA),
    ("registry.ollama.ai/library/llama3.2:3b", LLAMA),
    ("gpt-4o", QWEN),
    ("Qwen2.5:7B", QWEN),
]


@pytest.mark.parametrize(("name", "tag"), NAMES)
async def test_chat_reaches_a_container_of_the_named_model(fleet: RouterFleet, name: str, tag: str) -> None:
    client = openai_client(fleet)
    raw, served = await served_by(
        fleet, lambda: client.chat.completions.with_raw_response.create(model=name, messages=MESSAGES)
    )
    reply = raw.parse()
    assert reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model == tag  # rewritten to the tag the container knows
    container = raw.headers["X-Router-Container"]
    assert served == {container: 1}
    assert container in CONTAINERS_OF[tag]
    assert raw.headers["X-Router-Model"] == tag
    await client.close()


async def test_chat_stream_arrives_as_chunks_ending_with_a_finish_reason(fleet: RouterFleet) -> None:
    client = openai_client(fleet)
    stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    pieces = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in pieces if c.choices)
    assert len(pieces) > 3
    assert text.strip()
    assert [c.choices[0].finish_reason for c in pieces if c.choices][-1] == "stop"
    await client.close()


@pytest.mark.parametrize("stream", [False, True])
async def test_completions(fleet: RouterFleet, stream: bool) -> None:
    client = openai_client(fleet)
    result, served = await served_by(
        fleet, lambda: client.completions.create(model="gpt-4o", prompt="Once upon a time", stream=stream)
    )
    text = "".join([c.choices[0].text async for c in result if c.choices]) if stream else result.choices[0].text
    assert text.strip()
    assert served == {"q": 1}
    await client.close()


@pytest.mark.parametrize("name", [EMBED, "text-embedding-3-small", "Nomic-Embed-Text"])
async def test_embeddings(fleet: RouterFleet, name: str) -> None:
    client = openai_client(fleet)
    result, served = await served_by(
        fleet, lambda: client.embeddings.create(model=name, input=["first", "second"])
    )
    assert [d.index for d in result.data] == [0, 1]
    assert all(len(d.embedding) > 10 for d in result.data)
    assert served == {"e": 1}
    await client.close()


async def test_models_lists_every_tag_and_alias_with_catalog_metadata(fleet: RouterFleet) -> None:
    client = openai_client(fleet)
    models = {m.id: m.model_dump() for m in (await client.models.list()).data}
    assert set(models) == {*TAGS, "gpt-4o-mini", "gpt-4o", "text-embedding-3-small"}
    llama = models[LLAMA]
    assert llama["object"] == "model"
    assert llama["owned_by"] == "meta"
    assert llama["context_length"] == 131072
    assert llama["capabilities"] == ["completion", "tools"]
    assert llama["aliases"] == ["gpt-4o-mini"]
    assert llama["description"] == "a small llama"
    alias = models["gpt-4o-mini"]
    assert alias["alias_of"] == LLAMA
    assert alias["context_length"] == 131072
    assert models["text-embedding-3-small"]["capabilities"] == ["embedding"]
    assert models[QWEN]["context_length"] == 32768
    await client.close()


@pytest.mark.parametrize(
    ("model_id", "alias_of"),
    [(LLAMA, None), ("gpt-4o-mini", LLAMA), ("GPT-4O-MINI", LLAMA), ("text-embedding-3-small", EMBED)],
)
async def test_retrieve_model_by_tag_or_alias(fleet: RouterFleet, model_id: str, alias_of: str | None) -> None:
    client = openai_client(fleet)
    model = (await client.models.retrieve(model_id)).model_dump()
    assert model["id"] == model_id
    assert model.get("alias_of") == alias_of
    assert "capabilities" in model
    await client.close()


async def test_retrieve_unknown_model_is_a_not_found_error(fleet: RouterFleet) -> None:
    client = openai_client(fleet)
    with pytest.raises(openai.NotFoundError) as caught:
        await client.models.retrieve("no-such-model")
    assert caught.value.status_code == 404
    assert caught.value.code == "model_not_found"
    await client.close()

