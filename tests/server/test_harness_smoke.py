"""The harness itself: a router in front of emulators answers a chat through the OpenAI SDK."""

from __future__ import annotations

import openai

from tests.harness import catalog_yaml, router_fleet

CATALOG = catalog_yaml("a", "b", models={"llama3.2:3b": "containers: [a, b], aliases: [gpt-4o-mini]"})


async def test_chat_through_alias_reaches_a_container() -> None:
    async with router_fleet(CATALOG, subprocess_containers={"b"}) as fleet:
        client = openai.AsyncOpenAI(base_url=fleet.url + "/v1", api_key="unused")
        reply = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content
        served = [name for name, b in fleet.backends.items() if (await b.stats())["requests"] > 0]
        assert served, "no emulator saw the request"
        await client.close()
