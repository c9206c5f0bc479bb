"""What a client notices when a container dies, hangs, errs, is busy or breaks a stream."""

from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp
import pytest

from router.fleet.state import ContainerState
from tests.fleet.support import (
    FALLBACK,
    FAST,
    MODEL,
    TWO_CONTAINERS,
    Reply,
    chat,
    chat_body,
    container_status,
    first_choice,
    post,
    wait_until,
)
from tests.harness import ONE_CONTAINER, RouterFleet, catalog_yaml, router_fleet

WIDE = catalog_yaml("a", "b", models={"llama3.2:3b": "containers: [a, b]"}, container_extra="num_parallel: 16")


async def test_sigkill_during_200_concurrent_requests_all_succeed() -> None:
    async with router_fleet(
        WIDE,
        emulator={"tokens_per_second": 40, "response_tokens": 8},
        subprocess_containers={"b"},
        settings={**FAST, "max_queue": 200, "queue_timeout": 60},
    ) as fleet:
        await fleet.wait_warm()
        b_state = fleet.services.fleet.containers["b"]
        path, body = chat_body("openai")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            requests = [asyncio.create_task(post(fleet, path, body, session=session, timeout=60)) for _ in range(200)]

            async def b_is_busy() -> bool:  # b has answered some and holds more
                return b_state.served >= 8 and b_state.in_flight >= 8

            await wait_until(b_is_busy)
            fleet.backends["b"].kill()
            replies = await asyncio.gather(*requests)
        assert Counter(r.status for r in replies) == {200: 200}
        assert all(r.json()["choices"][0]["message"]["content"] for r in replies)
        served = Counter(r.container for r in replies)
        assert served["a"] > 0 and served["b"] > 0  # b served some before it died
        assert (await container_status(fleet, "b"))["state"] == "down"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_hang_is_served_by_the_sibling_after_ttft_timeout(stream: bool) -> None:
    ttft = 1.0
    async with router_fleet(TWO_CONTAINERS, settings={**FAST, "ttft_timeout": ttft}) as fleet:
        await fleet.wait_warm()
        hung = first_choice(fleet)
        sibling = ({"a", "b"} - {hung}).pop()
        await fleet.backends[hung].add_fault("hang", 1, model=MODEL)
        reply = await chat(fleet, "ollama", stream=stream)
        assert reply.status == 200
        assert reply.container == sibling
        assert reply.body.rstrip().endswith(b"}") and b'"done":true' in reply.body
        assert reply.elapsed >= ttft  # the hung one was given its ttft_timeout first
        hung_backend = fleet.backends[hung]

        async def hung_request_dropped() -> bool:  # the router leaves no request hanging upstream
            return (await hung_backend.stats())["cancelled"] == 1

        await wait_until(hung_request_dropped, timeout=5)


@pytest.mark.parametrize("kind", ["error", "busy"])
@pytest.mark.parametrize("api", ["openai", "ollama"])
async def test_error_and_busy_are_served_by_the_sibling(kind: str, api: str) -> None:
    async with router_fleet(TWO_CONTAINERS, settings=FAST) as fleet:
        await fleet.wait_warm()
        failing = first_choice(fleet)
        sibling = ({"a", "b"} - {failing}).pop()
        before = (await fleet.backends[failing].stats())["requests"]
        await fleet.backends[failing].add_fault(kind, 1, model=MODEL)
        reply = await chat(fleet, api)
        assert reply.status == 200, reply.body
        assert reply.container == sibling
        assert reply.headers["X-Router-Model"] == MODEL
        assert "X-Router-Fallback" not in reply.headers  # a sibling is not a fallback model
        assert (await fleet.backends[failing].stats())["requests"] == before + 1  # it was tried first
        assert (await container_status(fleet, failing))["state"] == "up"  # one failure does not take it out


@pytest.mark.parametrize("api", ["openai", "ollama"])
async def test_cut_mid_stream_ends_the_stream_without_retry_and_is_counted(api: str) -> None:
    async with router_fleet(TWO_CONTAINERS, settings=FAST) as fleet:
        await fleet.wait_warm()
        cutting = first_choice(fleet)
        sibling = ({"a", "b"} - {cutting}).pop()
        sibling_before = (await fleet.backends[sibling].stats())["requests"]
        await fleet.backends[cutting].add_fault("cut", 1, model=MODEL, after_tokens=3)
        reply = await chat(fleet, api, stream=True)
        assert reply.status == 200
        assert reply.container == cutting
        lines = [line for line in reply.body.split(b"\n") if line.strip()]
        if api == "openai":
            assert b"data: [DONE]" not in reply.body
            assert b'"error"' in lines[-1]  # an error event the SDKs raise on
        else:
            assert b'"error"' in lines[-1] and b'"done":true' not in reply.body
        assert (await fleet.backends[sibling].stats())["requests"] == sibling_before  # no retry
        assert (await fleet.status())["counters"]["stream_failures"] == 1


async def test_every_container_down_is_503_with_retry_after_at_once() -> None:
    # no probe in the test's time: what notices the dead container is the request itself
    async with router_fleet(ONE_CONTAINER, subprocess_containers={"a"}, settings={**FAST, "health_interval": 300}) as fleet:
        fleet.backends["a"].kill()
        # before any probe noticed: the refused connection takes it out at once (a 503, not
        # the 429 a request gets after waiting out a queue)
        for api in ("openai", "ollama"):
            reply = await chat(fleet, api)
            assert reply.status == 503 and int(reply.headers["Retry-After"]) >= 1

        async def reported_down() -> bool:
            return (await container_status(fleet, "a"))["state"] == "down"

        await wait_until(reported_down)
        for api in ("openai", "ollama"):
            reply = await chat(fleet, api)
            assert reply.status == 503
            assert int(reply.headers["Retry-After"]) >= 1
            error = reply.json()["error"]
            if api == "openai":
                assert MODEL in error["message"] and error["type"]
            else:
                assert isinstance(error, str) and MODEL in error


async def _one_in_flight(fleet: RouterFleet) -> tuple[ContainerState, asyncio.Task[Reply]]:
    """Container a's state once a first chat holds its one slot, and that chat."""
    state = fleet.services.fleet.containers["a"]
    running = asyncio.create_task(chat(fleet))

    async def one_in_flight() -> bool:
        return state.in_flight == 1

    await wait_until(one_in_flight)
    return state, running


QUEUE_OF_ONE = catalog_yaml("a", models={"llama3.2:3b": "containers: [a]"}, container_extra="num_parallel: 1")


async def test_queue_full_is_429_with_retry_after() -> None:
    async with router_fleet(
        QUEUE_OF_ONE,
        emulator={"tokens_per_second": 10, "response_tokens": 30},
        settings={**FAST, "max_queue": 1, "queue_timeout": 30},
    ) as fleet:
        state, running = await _one_in_flight(fleet)
        queued = asyncio.create_task(chat(fleet))

        async def one_queued() -> bool:
            return state.slots.queued == 1

        await wait_until(one_queued)
        assert (await container_status(fleet, "a"))["queued"] == 1
        for api in ("openai", "ollama"):
            refused = await chat(fleet, api)
            assert refused.status == 429
            assert int(refused.headers["Retry-After"]) >= 1
        # refused at once: while the slot's holder still runs and the queued one still waits
        assert not running.done() and state.slots.queued == 1
        assert (await running).status == 200
        assert (await queued).status == 200  # the queued one was served when the slot freed


SIBLINGS_OF_ONE = catalog_yaml("a", "b", models={"llama3.2:3b": "containers: [a, b]"}, container_extra="num_parallel: 1")


async def test_a_full_container_sends_the_next_request_to_a_sibling_with_room() -> None:
    async with router_fleet(
        SIBLINGS_OF_ONE, emulator={"tokens_per_second": 20, "response_tokens": 8}, settings=FAST
    ) as fleet:
        await fleet.wait_warm()
        replies = await asyncio.gather(chat(fleet), chat(fleet))
        assert sorted(r.container or "" for r in replies) == ["a", "b"]
        assert all(r.status == 200 for r in replies)


@pytest.mark.parametrize("api", ["openai", "ollama"])
async def test_model_with_all_containers_down_is_served_by_its_fallback(api: str) -> None:
    async with router_fleet(FALLBACK, subprocess_containers={"a"}, settings=FAST) as fleet:
        fleet.backends["a"].kill()
        reply = await chat(fleet, api)
        assert reply.status == 200, reply.body
        assert reply.container == "b"
        assert reply.headers["X-Router-Model"] == "qwen2.5:7b"
        assert reply.headers["X-Router-Fallback"].startswith("llama3.2:3b -> qwen2.5:7b")
        assert reply.json()["model"] == "qwen2.5:7b"  # the reply says which model answered
        status = await fleet.status()
        assert status["counters"]["fallbacks"] == 1
        assert next(c for c in status["containers"] if c["name"] == "a")["state"] == "down"
        # once a is known down, the fallback is still served, without trying a again
        again = await chat(fleet, api)
        assert again.status == 200 and again.headers["X-Router-Model"] == "qwen2.5:7b"


async def test_a_container_lacking_the_model_is_skipped_for_a_sibling_that_has_it() -> None:
    # `a`, the primary, has not pulled the model yet: Ollama answers 404 there
    async with router_fleet(
        TWO_CONTAINERS,
        per_container={"a": {"models": [], "allow_pull": False}},
        settings={**FAST, "keep_warm": False},  # nothing loaded anywhere: catalog order, a first
    ) as fleet:
        reply = await chat(fleet)
        assert (reply.status, reply.container) == (200, "b")
        assert (await fleet.backends["a"].stats())["requests"] == 1  # tried first, answered 404
        assert (await container_status(fleet, "a"))["state"] == "up"  # a missing model is not a sick container


@pytest.mark.parametrize(("kind", "state"), [("busy", "up"), ("error", "ejected")])
async def test_a_busy_container_is_not_taken_out_but_a_failing_one_is(kind: str, state: str) -> None:
    # one passive failure is enough to take a container out; probes too rare to bring it back
    async with router_fleet(
        TWO_CONTAINERS, settings={"health_interval": 30, "failure_threshold": 1}
    ) as fleet:
        await fleet.wait_warm()
        failing = first_choice(fleet)
        await fleet.backends[failing].add_fault(kind, 1, model=MODEL)
        reply = await chat(fleet)
        assert reply.status == 200 and reply.container != failing
        assert (await container_status(fleet, failing))["state"] == state


async def test_waiting_past_queue_timeout_is_429_with_retry_after() -> None:
    async with router_fleet(
        QUEUE_OF_ONE,
        emulator={"tokens_per_second": 10, "response_tokens": 10},
        settings={**FAST, "max_queue": 4, "queue_timeout": 0.3},
    ) as fleet:
        state, running = await _one_in_flight(fleet)
        waited = await chat(fleet, "ollama")
        assert waited.status == 429 and int(waited.headers["Retry-After"]) >= 1
        assert isinstance(waited.json()["error"], str)
        assert not state.slots.queued  # it left the queue
        assert (await running).status == 200


@pytest.mark.parametrize("api", ["openai", "ollama"])
async def test_a_container_killed_mid_stream_ends_the_stream_with_an_error_and_no_retry(api: str) -> None:
    async with router_fleet(
        TWO_CONTAINERS,
        emulator={"tokens_per_second": 10, "response_tokens": 20},
        subprocess_containers={"a"},
        settings=FAST,
    ) as fleet:
        await fleet.wait_warm()
        assert first_choice(fleet) == "a"
        sibling_before = (await fleet.backends["b"].stats())["requests"]
        path, body = chat_body(api, stream=True)
        async with fleet.session.post(fleet.url + path, json=body) as response:
            assert response.status == 200 and response.headers["X-Router-Container"] == "a"
            first = await response.content.readline()
            assert first.strip()
            fleet.backends["a"].kill()
            rest = await asyncio.wait_for(response.content.read(), 5)  # ends, does not hang
        last = [line for line in rest.split(b"\n") if line.strip()][-1]
        assert b'"error"' in last
        assert b"[DONE]" not in rest and b'"done":true' not in rest
        assert (await fleet.backends["b"].stats())["requests"] == sibling_before  # no retry
        assert (await fleet.status())["counters"]["stream_failures"] == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_a_clients_bad_options_are_answered_once_and_take_no_container_out(stream: bool) -> None:
    """Ollama answers a wrong option type with a 500 (docs/ollama-wire.md §4.6); that is the
    client's fault: the router passes it on without trying the sibling, and no
    container leaves rotation (else a few bad requests would take out the fleet)."""
    async with router_fleet(TWO_CONTAINERS, settings={"health_interval": 30, "failure_threshold": 1}) as fleet:
        await fleet.wait_warm()
        before = {name: (await b.stats())["requests"] for name, b in fleet.backends.items()}
        reply = await chat(fleet, "ollama", stream=stream, options={"temperature": "hot"})
        assert reply.status == 500
        assert reply.json() == {"error": 'option "temperature" must be of type float32'}
        after = {name: (await b.stats())["requests"] for name, b in fleet.backends.items()}
        assert sum(after.values()) - sum(before.values()) == 1  # no retry on the sibling
        for name in fleet.backends:
            assert (await container_status(fleet, name))["state"] == "up"
        assert (await chat(fleet, "ollama")).status == 200
