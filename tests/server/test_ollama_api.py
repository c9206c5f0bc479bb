"""Ollama's own API through the official `ollama` client and raw HTTP: inference
forwarded by model, tags and ps merged over the fleet, version, `GET`/`HEAD /`."""

from __future__ import annotations

from datetime import datetime

import ollama
import pytest

from tests.harness import RouterFleet
from tests.server.support import CONTAINERS_OF, EMBED, LLAMA, MESSAGES, OLDEST_VERSION, QWEN, TAGS, http, ollama_client, served_by

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.mark.parametrize(("name", "container_set"), [(LLAMA, {"a", "b"}), ("gpt-4o-mini", {"a", "b"}), ("QWEN2.5:7b", {"q"})])
@pytest.mark.parametrize("stream", [False, True])
async def test_chat(fleet: RouterFleet, name: str, container_set: set[str], stream: bool) -> None:
    client = ollama_client(fleet)

    async def chat() -> str:
        if not stream:
            return (await client.chat(model=name, messages=MESSAGES)).message.content or ""
        parts = [part async for part in await client.chat(model=name, messages=MESSAGES, stream=True)]
        assert len(parts) > 3 and parts[-1].done
        return "".join(p.message.content or "" for p in parts)

    text, served = await served_by(fleet, chat)
    assert text.strip()
    assert sum(served.values()) == 1 and set(served) <= container_set


@pytest.mark.parametrize("stream", [False, True])
async def test_generate(fleet: RouterFleet, stream: bool) -> None:
    client = ollama_client(fleet)

    async def generate() -> str:
        if not stream:
            reply = await client.generate(model="gpt-4o", prompt="Why is the sky blue?")
            assert reply.done and reply.model == QWEN
            return reply.response
        return "".join([p.response async for p in await client.generate(model="gpt-4o", prompt="Why?", stream=True)])

    text, served = await served_by(fleet, generate)
    assert text.strip()
    assert served == {"q": 1}


async def test_embed(fleet: RouterFleet) -> None:
    client = ollama_client(fleet)
    reply, served = await served_by(fleet, lambda: client.embed(model="text-embedding-3-small", input=["a", "b"]))
    assert len(reply.embeddings) == 2 and len(reply.embeddings[0]) > 10
    assert served == {"e": 1}


async def test_legacy_embeddings(fleet: RouterFleet) -> None:
    client = ollama_client(fleet)
    reply, served = await served_by(fleet, lambda: client.embeddings(model="nomic-embed-text", prompt="hello"))
    assert len(reply.embedding) > 10
    assert served == {"e": 1}


# by name and by alias, each model's own card: what its container itself shows for it
@pytest.mark.parametrize(("name", "shown"), [(LLAMA, LLAMA), ("gpt-4o-mini", LLAMA), ("gpt-4o", QWEN), ("text-embedding-3-small", EMBED)])
async def test_show(fleet: RouterFleet, name: str, shown: str) -> None:
    reply = await ollama_client(fleet).show(name)
    cards = {tag: await ollama.AsyncClient(host=fleet.backends[next(iter(CONTAINERS_OF[tag]))].url).show(tag) for tag in TAGS}
    assert len({(c.details.family, c.details.parameter_size) for c in cards.values() if c.details}) == len(TAGS)  # tell apart
    assert reply.details == cards[shown].details
    assert reply.modelinfo == cards[shown].modelinfo
    assert reply.capabilities == cards[shown].capabilities


async def test_show_accepts_the_legacy_name_field(fleet: RouterFleet) -> None:
    reply = await http(fleet, "POST", "/api/show", json={"name": "gpt-4o"})
    assert reply.status == 200
    assert reply.json()["details"]


async def test_tags_lists_each_catalog_model_once(fleet: RouterFleet) -> None:
    client = ollama_client(fleet)
    models = (await client.list()).models
    assert sorted(m.model for m in models) == sorted(TAGS)  # llama is on two containers, listed once
    llama = next(m for m in models if m.model == LLAMA)
    assert llama.size and llama.digest and llama.details and llama.details.family


async def test_ps_lists_each_loaded_model_once_with_its_latest_expiry(fleet: RouterFleet) -> None:
    client = ollama_client(fleet)
    await client.chat(model=LLAMA, messages=MESSAGES)
    models = (await client.ps()).models
    names = [m.model for m in models]
    assert sorted(names) == sorted(set(names))
    assert {LLAMA, EMBED} <= set(names)  # llama loaded on both a and b (keep-warm): one entry
    llama = next(m for m in models if m.model == LLAMA)
    per_container = [(await fleet.backends[c].request("GET", "/api/ps"))["models"][0]["expires_at"] for c in ("a", "b")]
    assert llama.expires_at == max(datetime.fromisoformat(t) for t in per_container)


async def test_version_is_the_lowest_in_the_fleet(fleet: RouterFleet) -> None:
    reply = await http(fleet, "GET", "/api/version")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
    assert reply.json() == {"version": OLDEST_VERSION}


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_root_says_ollama_is_running(fleet: RouterFleet, method: str) -> None:
    reply = await http(fleet, method, "/")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert reply.body == (b"Ollama is running" if method == "GET" else b"")


@pytest.mark.parametrize("path", ["/api/version", "/api/tags"])
async def test_head_answers_like_get_without_a_body(fleet: RouterFleet, path: str) -> None:
    get, head = await http(fleet, "GET", path), await http(fleet, "HEAD", path)
    assert head.status == get.status == 200
    assert head.headers["Content-Type"] == get.headers["Content-Type"]
    assert head.body == b""
