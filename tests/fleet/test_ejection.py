"""Outlier ejection against real emulators: containers that answer probes but fail
generations leave rotation, and come back once they serve again."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from datetime import datetime

import aiohttp
import pytest
import structlog

from tests.fleet.support import FAST, MODEL, TWO_CONTAINERS, Reply, chat, chat_body, container_status, post, wait_until
from tests.harness import RouterFleet, catalog_yaml, router_fleet

LONG_EJECTION = {**FAST, "failure_threshold": 3, "base_ejection_time": 600, "max_ejection_time": 600}
# Placed by load, every request tries the failing container again until it is ejected; one conversation
# placed by affinity would leave it after its first failure (tests/fleet/test_affinity.py).
BY_LOAD = catalog_yaml("a", "b", models={MODEL: "containers: [a, b], routing: least_loaded"})


async def metric(fleet: RouterFleet, name: str, container: str) -> float:
    async with fleet.session.get(fleet.url + "/metrics") as response:
        text = await response.text()
    found = re.search(rf'^ollama_router_{name}\{{container="{container}"\}} (\S+)$', text, re.MULTILINE)
    assert found is not None, f"{name} for {container} not in /metrics"
    return float(found.group(1))


@pytest.mark.parametrize("api", ["openai", "ollama"])
async def test_a_container_failing_every_generation_while_its_probes_pass_leaves_rotation(api: str) -> None:
    async with router_fleet(BY_LOAD, settings=LONG_EJECTION) as fleet:
        await fleet.wait_warm()
        await fleet.backends["a"].add_fault("error", -1, model=MODEL)  # every generation: 500
        with structlog.testing.capture_logs() as logs:
            replies = [await chat(fleet, api) for _ in range(60)]
        assert Counter(r.status for r in replies) == {200: 60}  # each failure was served by b
        assert Counter(r.container for r in replies) == {"b": 60}
        a = await container_status(fleet, "a")
        assert a["failures"] == 3  # tried failure_threshold times, then never again
        assert a["state"] == "ejected" and a["ejected"] is True and a["ejections"] == 1
        assert a["ejection_reason"] == "HTTP 500"
        assert datetime.fromisoformat(a["ejected_until"]).timestamp() > time.time() + 500
        assert a["last_probe"] is not None and a["last_error"] == "HTTP 500"
        assert await metric(fleet, "ejected", "a") == 1.0
        assert await metric(fleet, "ejections_total", "a") == 1.0
        assert await metric(fleet, "ejected", "b") == 0.0
        ejections = [e for e in logs if e["event"] == "container_ejected"]
        assert [(e["container"], e["log_level"], e["reason"]) for e in ejections] == [("a", "warning", "HTTP 500")]
        # the probes kept passing all along: a is ejected for its generations alone
        probed = (await fleet.backends["a"].stats())["requests"]
        assert probed >= 3


async def test_an_ejected_container_comes_back_once_it_serves_again() -> None:
    settings = {**FAST, "failure_threshold": 3, "base_ejection_time": 0.5, "max_ejection_time": 2}
    async with router_fleet(BY_LOAD, settings=settings) as fleet:
        await fleet.wait_warm()
        a = fleet.backends["a"]
        await a.add_fault("error", -1, model=MODEL)
        for _ in range(3):
            assert (await chat(fleet)).status == 200

        async def checked_and_ejected_again() -> bool:  # its probation checks fail while it still fails
            return (await container_status(fleet, "a"))["ejections"] >= 3

        await wait_until(checked_and_ejected_again, timeout=15)
        assert (await container_status(fleet, "a"))["failures"] == 3  # no client request was sent to find out
        await a.clear_faults()

        async def back_up() -> bool:
            return (await container_status(fleet, "a"))["state"] == "up"

        await wait_until(back_up, timeout=15)
        status = await container_status(fleet, "a")
        assert status["ejected"] is False and status["ejected_until"] is None and status["ejection_reason"] is None
        assert await metric(fleet, "ejected", "a") == 0.0
        replies = await asyncio.gather(*(chat(fleet) for _ in range(4)))
        assert {r.container for r in replies} == {"a", "b"}  # serving again, by fewest in flight
        assert all(r.status == 200 for r in replies)


async def test_a_client_request_on_probation_that_fails_ejects_it_again_for_longer() -> None:
    """Probes too rare to deep-check it: the one request probation lets through decides."""
    settings = {"health_interval": 60, "failure_threshold": 1, "base_ejection_time": 0.3, "max_ejection_time": 600}
    async with router_fleet(SIBLINGS_OF_ONE, emulator={"tokens_per_second": 20, "response_tokens": 10}, settings=settings) as fleet:
        await fleet.wait_warm()
        await fleet.backends["a"].add_fault("cut", -1, model=MODEL, after_tokens=1)
        path, body = chat_body("ollama", stream=True)
        first = await post(fleet, path, body)
        assert first.container == "a" and b'"error"' in first.body  # cut: ejected at once (threshold 1)
        until = datetime.fromisoformat((await container_status(fleet, "a"))["ejected_until"]).timestamp()

        async def ejection_over() -> bool:
            return time.time() > until

        await wait_until(ejection_over)
        busy = asyncio.create_task(post(fleet, path, body))  # b busy: the next request goes to a, on probation
        await wait_until(lambda: _in_flight(fleet, "b", 1))
        with structlog.testing.capture_logs() as logs:
            second = await post(fleet, path, body)
        assert second.container == "a" and not complete(second.body)
        assert (await busy).container == "b" and complete(busy.result().body)
        ejected = [e for e in logs if e["event"] == "container_ejected"]
        assert [(e["previous"], e["seconds"]) for e in ejected] == [("probation", 0.6)]  # twice as long as the first
        status = await container_status(fleet, "a")
        assert status["state"] == "ejected" and status["ejections"] == 2


def complete(body: bytes) -> bool:
    """An SSE stream ends with [DONE]; an NDJSON one with its done:true line."""
    last = body.rstrip().rsplit(b"\n", 1)[-1]
    return last == b"data: [DONE]" or (b'"done":true' in last and b'"error"' not in last)


async def _in_flight(fleet: RouterFleet, name: str, count: int) -> bool:
    return fleet.services.fleet.containers[name].in_flight == count


SIBLINGS_OF_ONE = catalog_yaml("a", "b", models={"llama3.2:3b": "containers: [a, b]"}, container_extra="num_parallel: 1")
SIBLINGS_OF_FOUR = catalog_yaml("a", "b", models={"llama3.2:3b": "containers: [a, b]"}, container_extra="num_parallel: 4")


@pytest.mark.parametrize("api", ["openai", "ollama"])
async def test_a_container_cutting_every_stream_breaks_only_a_few_of_80(api: str) -> None:
    async with router_fleet(
        SIBLINGS_OF_FOUR,
        emulator={"tokens_per_second": 100, "response_tokens": 12},
        settings={**FAST, "max_queue": 100},
    ) as fleet:
        await fleet.wait_warm()
        await fleet.backends["a"].add_fault("cut", -1, model=MODEL, after_tokens=2)
        path, body = chat_body(api, stream=True)
        gate = asyncio.Semaphore(8)
        async with aiohttp.ClientSession() as session:

            async def one() -> Reply:
                async with gate:
                    return await post(fleet, path, body, session=session)

            replies = await asyncio.gather(*(one() for _ in range(80)))
        assert all(r.status == 200 for r in replies)
        broken = [r for r in replies if not complete(r.body)]
        assert all(r.container == "a" for r in broken)
        assert len(broken) <= 8, Counter(r.container for r in replies)  # the first few, before a was ejected
        assert (await fleet.status())["counters"]["stream_failures"] == len(broken)
        assert (await container_status(fleet, "a"))["ejections"] >= 1


async def test_a_failing_container_and_a_full_sibling_queue_answer_429_not_the_failed_500() -> None:
    async with router_fleet(
        SIBLINGS_OF_ONE,
        per_container={"b": {"tokens_per_second": 5, "response_tokens": 40}},
        settings={**FAST, "max_queue": 1, "queue_timeout": 30, "failure_threshold": 100},
    ) as fleet:
        await fleet.wait_warm()
        await fleet.backends["a"].add_fault("error", -1, model=MODEL)  # a fails every generation, fast
        b = fleet.services.fleet.containers["b"]
        holding = asyncio.create_task(chat(fleet))  # a fails it, b takes it: b full
        await wait_until(lambda: _in_flight(fleet, "b", 1))
        waiting = asyncio.create_task(chat(fleet))  # a fails it, it waits in b's queue: b's queue full

        async def b_queue_full() -> bool:
            return b.slots.queued == 1

        await wait_until(b_queue_full)
        for api in ("openai", "ollama"):
            reply = await chat(fleet, api)
            assert reply.status == 429, reply.body
            assert int(reply.headers["Retry-After"]) >= 1
            error = reply.json()["error"]
            if api == "openai":
                assert error["code"] == "fleet_at_capacity" and "emulated failure" not in error["message"]
            else:
                assert isinstance(error, str) and "capacity" in error and "emulated failure" not in error
        assert (await container_status(fleet, "a"))["failures"] >= 4  # a was tried first each time
        holding.cancel()
        waiting.cancel()
        await asyncio.gather(holding, waiting, return_exceptions=True)


async def test_a_killed_container_is_logged_down_when_a_request_finds_it_refusing() -> None:
    async with router_fleet(TWO_CONTAINERS, subprocess_containers={"a"}, settings={**FAST, "health_interval": 30}) as fleet:
        await fleet.wait_warm()
        fleet.backends["a"].kill()
        with structlog.testing.capture_logs() as logs:
            reply = await chat(fleet)
        assert reply.status == 200 and reply.container == "b"
        down = [e for e in logs if e["event"] == "container_down"]
        assert [(e["container"], e["log_level"]) for e in down] == [("a", "warning")]
        assert "cannot connect" in down[0]["reason"]
        assert (await container_status(fleet, "a"))["state"] == "down"
