"""Streams reach the client as tokens are generated, and a client that leaves
stops the generation upstream (mid-stream or still waiting for the first token)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio

from tests.harness import Backend, RouterFleet, router_fleet
from tests.server.support import CATALOG, MESSAGES, chunks, eventually, openai_client

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKENS_PER_SECOND = 25
SHORT = 12  # tokens the timing tests ask for (about half a second)
LONG = 60  # tokens an answer has unless told otherwise: a stream outlives the test's patience


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet() -> AsyncIterator[RouterFleet]:
    emulator = {"tokens_per_second": TOKENS_PER_SECOND, "response_tokens": LONG}
    async with router_fleet(CATALOG, emulator=emulator) as running:
        yield running


STREAMS: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"messages": MESSAGES, "max_tokens": SHORT},
    "/v1/completions": {"prompt": "Once upon a time", "max_tokens": SHORT},
    "/api/chat": {"messages": MESSAGES, "options": {"num_predict": SHORT}},
    "/api/generate": {"prompt": "Once upon a time", "options": {"num_predict": SHORT}},
}


@pytest.mark.parametrize("path", list(STREAMS))
async def test_stream_arrives_spread_over_time_not_in_one_lump(fleet: RouterFleet, path: str) -> None:
    response, arrivals = await chunks(fleet, path, {"model": "gpt-4o", "stream": True, **STREAMS[path]})
    assert response.status == 200
    assert response.headers["Content-Type"] == ("text/event-stream" if path.startswith("/v1/") else "application/x-ndjson")
    end = arrivals[-1].at
    first_half = [a for a in arrivals if a.at < end / 2]
    second_half = [a for a in arrivals if a.at >= end / 2]
    # Buffered, every piece would land together at the end.
    assert len(first_half) >= 3, [round(a.at, 3) for a in arrivals]
    assert len(second_half) >= 3, [round(a.at, 3) for a in arrivals]
    assert arrivals[0].at < end / 2


async def _settled(backend: Backend, cancelled_before: int) -> bool:
    stats = await backend.stats()
    return stats["cancelled"] > cancelled_before and stats["in_flight"] == 0


async def _router_idle(fleet: RouterFleet) -> bool:
    return all(c["in_flight"] == 0 and c["queued"] == 0 for c in (await fleet.status())["containers"])


async def _assert_generation_stopped(fleet: RouterFleet, cancelled_before: int, container: str = "q") -> None:
    backend = fleet.backends[container]
    assert await eventually(lambda: _settled(backend, cancelled_before)), await backend.stats()
    assert await eventually(lambda: _router_idle(fleet)), await fleet.status()


@pytest.mark.parametrize("path", list(STREAMS))
async def test_client_leaving_mid_stream_cancels_upstream(fleet: RouterFleet, path: str) -> None:
    cancelled = (await fleet.backends["q"].stats())["cancelled"]
    body = {**STREAMS[path], "model": "gpt-4o", "stream": True, "max_tokens": LONG, "options": {}}
    async with fleet.session.post(fleet.url + path, data=orjson.dumps(body)) as response:
        assert response.headers["X-Router-Container"] == "q"
        assert await response.content.readany()
        response.close()  # the client hangs up with most of the answer still to come
    await _assert_generation_stopped(fleet, cancelled)


async def test_closing_an_openai_sdk_stream_cancels_upstream(fleet: RouterFleet) -> None:
    cancelled = (await fleet.backends["q"].stats())["cancelled"]
    client = openai_client(fleet)
    stream = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    async for _ in stream:
        break
    await stream.close()
    await _assert_generation_stopped(fleet, cancelled)
    await client.close()


@pytest.mark.parametrize(("path", "stream"), [("/v1/chat/completions", True), ("/api/chat", False)])
async def test_client_leaving_before_the_first_token_cancels_upstream(fleet: RouterFleet, path: str, stream: bool) -> None:
    backend = fleet.backends["q"]
    await backend.add_fault("hang")  # no first token until the client gives up
    cancelled = (await backend.stats())["cancelled"]
    body = {"model": "gpt-4o", "messages": MESSAGES, "stream": stream}
    with pytest.raises(TimeoutError):
        async with fleet.session.post(fleet.url + path, data=orjson.dumps(body), timeout=aiohttp.ClientTimeout(total=0.5)):
            pass
    await _assert_generation_stopped(fleet, cancelled)


async def test_concurrent_streams_spread_over_the_models_containers(fleet: RouterFleet) -> None:
    # two conversations (the model places by conversation: a new one goes to the least-loaded container)
    bodies = [
        orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], "max_tokens": SHORT, "stream": True})
        for text in ("Tell me about whales.", "Tell me about owls.")
    ]
    async with fleet.session.post(fleet.url + "/v1/chat/completions", data=bodies[0]) as first:
        async with fleet.session.post(fleet.url + "/v1/chat/completions", data=bodies[1]) as second:
            containers = {first.headers["X-Router-Container"], second.headers["X-Router-Container"]}
            await first.read()
            await second.read()
    assert containers == {"a", "b"}  # the second went to the container with fewer in flight


async def test_client_leaving_the_routers_queue_never_reaches_the_container(fleet: RouterFleet) -> None:
    embedder = fleet.backends["e"]  # num_parallel 1: a second request queues in the router
    await embedder.add_fault("hang")
    before = await embedder.stats()
    body = orjson.dumps({"model": "text-embedding-3-small", "input": "hi"})

    async def give_up_after(seconds: float) -> None:
        with pytest.raises(TimeoutError):
            async with fleet.session.post(fleet.url + "/api/embed", data=body, timeout=aiohttp.ClientTimeout(total=seconds)):
                pass

    def e_holds(in_flight: int, queued: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return [(c["in_flight"], c["queued"]) for c in (await fleet.status())["containers"] if c["name"] == "e"] == [(in_flight, queued)]

        return check

    holder = asyncio.create_task(give_up_after(4.0))
    assert await eventually(e_holds(1, 0))  # the hanging one holds e's slot
    leaver = asyncio.create_task(give_up_after(1.5))
    assert await eventually(e_holds(1, 1))  # queued behind it...
    await leaver
    assert await eventually(e_holds(1, 0))  # ...then gone from the router's queue
    await holder
    await _assert_generation_stopped(fleet, before["cancelled"], "e")
    assert (await embedder.stats())["requests"] == before["requests"] + 1
