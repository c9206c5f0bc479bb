"""The harness itself: a router in front of emulators answers a chat through the OpenAI SDK."""

from __future__ import annotations

import openai

from tests.harness import catalog_yaml, router_fleet

CATALOG = catalog_yaml("a", "b", models={"llama3.2:3b": "containers: [a, b], aliases: [gpt-4o-mini]"})


async def test_chat_through_alias_reaches_a_container() -> None:
    async with router_fleet(CATALOG, subprocess_containers={"b"}) as fleet:
        # the preload's pings count as requests too: only what the chat adds is the chat's
        before = {name: (await b.stats())["requests"] for name, b in fleet.backends.items()}
        client = openai.AsyncOpenAI(base_url=fleet.url + "/v1", api_key="unused")
        raw = await client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        await client.close()
        reply = raw.parse()
        assert reply.choices[0].message.content
        after = {name: (await b.stats())["requests"] for name, b in fleet.backends.items()}
        served = {name: after[name] - before[name] for name in after if after[name] != before[name]}
        assert served == {raw.headers["X-Router-Container"]: 1}, "exactly one emulator answered: the one the router names"
