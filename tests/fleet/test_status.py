"""`GET /router/status`: what an operator reads about containers and models."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from tests.fleet.support import FAST, MODEL, chat, wait_until
from tests.harness import router_fleet

CATALOG = """
version: 1
containers:
  a: {gpus: [0, 1], port: 1, num_parallel: 2}
  b: {gpus: [2], port: 2}
models:
  llama3.2:3b: {containers: [a, b], aliases: [gpt-4o-mini], fallback: [nomic-embed-text]}
  nomic-embed-text: {containers: [b], capabilities: [embedding]}
"""


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_status_lists_containers_and_models() -> None:
    async with router_fleet(CATALOG, settings=FAST) as fleet:
        await fleet.wait_warm()
        status = await fleet.status()
        assert status["ready"] is True
        containers = {c["name"]: c for c in status["containers"]}
        assert list(containers) == ["a", "b"]  # catalog order
        a, b = containers["a"], containers["b"]
        assert a["url"] == fleet.backends["a"].url and b["url"] == fleet.backends["b"].url
        assert a["gpus"] == [0, 1] and b["gpus"] == [2]
        assert a["state"] == b["state"] == "up"
        now = datetime.now(UTC)
        for c in (a, b):
            assert (now - _parse(c["last_probe"])).total_seconds() < 5
            assert c["consecutive_failures"] == 0 and c["down_since"] is None
            assert c["in_flight"] == 0 and c["queued"] == 0
            for loaded in c["loaded"]:
                assert _parse(loaded["expires_at"]) > now
        assert a["limit"] == 2
        assert [m["model"] for m in a["loaded"]] == [MODEL]
        assert sorted(m["model"] for m in b["loaded"]) == sorted([MODEL, "nomic-embed-text:latest"])

        models = {m["model"]: m for m in status["models"]}
        assert models[MODEL]["containers"] == ["a", "b"]
        assert sorted(models[MODEL]["ready"]) == ["a", "b"]
        assert models[MODEL]["aliases"] == ["gpt-4o-mini"]
        assert models[MODEL]["fallback"] == ["nomic-embed-text:latest"]
        embed = next(m for tag, m in models.items() if tag.startswith("nomic-embed-text"))
        assert embed["containers"] == ["b"] and embed["ready"] == ["b"]
        assert set(status["counters"]) >= {"fallbacks", "stream_failures", "keepwarm_pings"}


async def test_status_shows_requests_in_flight() -> None:
    async with router_fleet(
        CATALOG, emulator={"tokens_per_second": 10, "response_tokens": 6}, settings=FAST
    ) as fleet:
        await fleet.wait_warm()
        pending = asyncio.create_task(chat(fleet))

        async def one_in_flight() -> bool:
            return sum(c["in_flight"] for c in (await fleet.status())["containers"]) == 1

        await wait_until(one_in_flight)
        assert (await pending).status == 200
        assert sum(c["in_flight"] for c in (await fleet.status())["containers"]) == 0
