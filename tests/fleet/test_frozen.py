"""Containers that freeze (SIGSTOP) or hang: streams end, keep-warm recovers, and
readiness follows what the containers' `/api/ps` says."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import pytest
import structlog

from tests.fleet.support import (
    FAST,
    MODEL,
    TWO_CONTAINERS,
    chat,
    chat_body,
    container_status,
    first_choice,
    ps_models,
    unload_behind_the_routers_back,
    wait_ready_state,
    wait_until,
)
from tests.harness import ONE_CONTAINER, Backend, router_fleet


@contextmanager
def frozen(backend: Backend) -> Iterator[None]:
    """SIGSTOP the emulator's process (a wedged GPU, a paused VM), SIGCONT on the way out."""
    assert backend.pid is not None
    os.kill(backend.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(backend.pid, signal.SIGCONT)


@pytest.mark.parametrize("api", ["openai", "ollama"])
async def test_a_stream_frozen_mid_way_ends_within_stream_idle_timeout_and_frees_its_slot(api: str) -> None:
    idle = 1.0
    async with router_fleet(
        TWO_CONTAINERS,
        emulator={"tokens_per_second": 10, "response_tokens": 50},
        subprocess_containers={"a"},
        settings={**FAST, "stream_idle_timeout": idle, "ttft_timeout": 10},
    ) as fleet:
        await fleet.wait_warm()
        assert first_choice(fleet) == "a"
        a = fleet.services.fleet.containers["a"]
        path, body = chat_body(api, stream=True)
        with structlog.testing.capture_logs() as logs:
            async with fleet.session.post(fleet.url + path, json=body) as response:
                assert response.headers["X-Router-Container"] == "a"
                assert (await response.content.readline()).strip()
                with frozen(fleet.backends["a"]):
                    rest = await asyncio.wait_for(response.content.read(), idle + 10)  # ends: no hang

                    async def slot_freed() -> bool:
                        return a.in_flight == 0

                    await wait_until(slot_freed)

                    async def probed_down() -> bool:
                        return (await container_status(fleet, "a"))["state"] == "down"

                    await wait_until(probed_down)
                    served = await chat(fleet, api)  # a is frozen: b serves
        last = [line for line in rest.split(b"\n") if line.strip()][-1]
        message = "no bytes from the container for 1s"
        if api == "openai":
            assert orjson.loads(last.removeprefix(b"data: "))["error"]["message"] == message
            assert b"data: [DONE]" not in rest
        else:
            assert orjson.loads(last) == {"error": message}
            assert b'"done":true' not in rest
        assert served.status == 200 and served.container == "b"
        status = await fleet.status()
        assert status["counters"]["stream_failures"] == 1
        assert next(c for c in status["containers"] if c["name"] == "a")["failures"] >= 1  # counted against a
        failed = [e for e in logs if e["event"] == "container_request_failed"]
        assert ("a", message) in [(e["container"], e["reason"]) for e in failed]


async def test_keep_warm_recovers_within_a_few_health_intervals_after_a_hang_clears() -> None:
    interval = 0.5
    async with router_fleet(ONE_CONTAINER, settings={**FAST, "health_interval": interval}) as fleet:
        await fleet.wait_warm()
        backend = fleet.backends["a"]
        state = fleet.services.fleet.containers["a"]
        bound = fleet.services.keepwarm.ping_timeout(state)
        assert bound < 10  # a few times the load seen at preload, not load_timeout (300s)
        await backend.add_fault("hang", -1, path="/api/generate")  # every keep-warm ping hangs
        with structlog.testing.capture_logs() as logs:
            await unload_behind_the_routers_back(fleet, "a")
            answer = await wait_ready_state(fleet, False)  # /api/ps no longer lists it: not ready
            assert answer["models_without_container"] == [MODEL]

            async def ping_stuck() -> bool:
                return (await backend.stats())["in_flight"] >= 1

            await wait_until(ping_stuck)
            await backend.clear_faults()  # the hang clears; the stuck ping still waits for an answer that never comes
            await wait_ready_state(fleet, True, timeout=bound + 4 * interval + 5)
        assert MODEL in await ps_models(fleet, "a")
        assert (await fleet.status())["models"][0]["ready"] == ["a"]
        gave_up = [e for e in logs if e["event"] == "keepwarm_failed"]
        assert gave_up and gave_up[0]["reason"].startswith(f"no answer within {bound:g}s")
        assert (await backend.stats())["cancelled"] >= 1  # the stuck ping was abandoned, then sent again
        assert any(e["event"] == "keepwarm_loaded" for e in logs)


async def test_readyz_follows_api_ps_and_keep_warm() -> None:
    async with router_fleet(ONE_CONTAINER, settings=FAST) as fleet:
        await fleet.wait_warm()
        backend = fleet.backends["a"]
        await backend.add_fault("load_fail", -1)  # keep-warm cannot load it back
        await unload_behind_the_routers_back(fleet, "a")
        answer = await wait_ready_state(fleet, False)
        assert answer["models_without_container"] == [MODEL]
        assert (await container_status(fleet, "a"))["loaded"] == []
        await backend.clear_faults()
        await wait_ready_state(fleet, True)
        assert MODEL in await ps_models(fleet, "a")
