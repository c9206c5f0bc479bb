"""`GET /router/status`: what an operator reads about containers and models."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from tests.fleet.support import FALLBACK, FAST, MODEL, chat, wait_until
from tests.harness import RouterFleet, router_fleet

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


async def fallbacks_metric(fleet: RouterFleet) -> float:
    async with fleet.session.get(fleet.url + "/metrics") as response:
        text = await response.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("ollama_router_fallbacks_total{"))


async def test_the_fallbacks_metric_and_the_status_counter_count_the_same_requests() -> None:
    """Both count requests a fallback model answered: not attempts on a fallback that failed."""
    async with router_fleet(FALLBACK, subprocess_containers={"a"}, settings=FAST) as fleet:
        await fleet.wait_warm()
        fleet.backends["a"].kill()
        await fleet.backends["b"].add_fault("error", 2, model="qwen2.5:7b")  # two fallback attempts fail
        kinds = [(api, stream) for api in ("openai", "ollama") for stream in (False, True)]
        replies = [await chat(fleet, api, stream=stream) for api, stream in kinds + kinds]
        served = [r for r in replies if "X-Router-Fallback" in r.headers]
        assert len(served) == 6 and sum(r.status == 500 for r in replies) == 2
        assert all(r.headers["X-Router-Model"] == "qwen2.5:7b" for r in served)
        assert (await fleet.status())["counters"]["fallbacks"] == 6
        assert await fallbacks_metric(fleet) == 6
