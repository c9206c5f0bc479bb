"""Active and passive health as `/router/status` and the clients see it; shutdown."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Awaitable, Callable

from aiohttp import web

from router.catalog import parse_catalog
from router.fleet.health import HealthMonitor
from router.fleet.state import Phase
from tests.fleet.support import MODEL, TWO_CONTAINERS, chat, container_status, ps_models, wait_until
from tests.harness import RouterFleet, fleet_of, router_fleet


def reports(fleet: RouterFleet, name: str, state: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await container_status(fleet, name))["state"] == state

    return check


async def test_killed_container_is_down_within_two_probe_intervals_and_up_after_it_returns() -> None:
    interval = 0.5
    async with router_fleet(
        TWO_CONTAINERS, subprocess_containers={"b"}, settings={"health_interval": interval, "probe_timeout": 1.0}
    ) as fleet:
        await fleet.wait_warm()
        fleet.backends["b"].kill()
        assert await wait_until(reports(fleet, "b", "down"), every=0.02) < 2 * interval
        down = await container_status(fleet, "b")
        assert down["consecutive_failures"] >= 1 and down["last_error"] and down["down_since"]
        # still answering, from the sibling
        reply = await chat(fleet)
        assert reply.status == 200 and reply.container == "a"

        await fleet.backends["b"].restart()
        assert await wait_until(reports(fleet, "b", "up"), every=0.02) < 2 * interval
        # the restarted container is warm again: keep-warm reloaded the model there
        await wait_until(lambda: _has_model(fleet, "b"))
        await fleet.wait_warm()
        up = await container_status(fleet, "b")
        assert up["consecutive_failures"] == 0 and up["last_error"] is None


async def _has_model(fleet: RouterFleet, name: str) -> bool:
    return MODEL in await ps_models(fleet, name)


async def test_a_refused_connection_on_a_request_marks_the_container_down_at_once() -> None:
    # probes too rare to notice: only the request's own failure (passive health) can
    async with router_fleet(
        TWO_CONTAINERS, subprocess_containers={"a"}, settings={"health_interval": 30, "probe_timeout": 1.0}
    ) as fleet:
        await fleet.wait_warm()
        fleet.backends["a"].kill()
        reply = await chat(fleet)
        assert reply.status == 200 and reply.container == "b"
        status = await container_status(fleet, "a")
        assert status["state"] == "down" and "connect" in status["last_error"]
        again = await chat(fleet)
        assert again.container == "b" and again.headers.get("X-Router-Fallback") is None


async def test_every_background_task_stops_on_shutdown() -> None:
    async with router_fleet(
        TWO_CONTAINERS,
        emulator={"load_time": 5.0},  # a preload still running when the router stops
        settings={"health_interval": 0.2, "deep_check_interval": 0.2, "ttft_timeout": 1.0},
        wait_ready=False,
    ) as fleet:
        services = fleet.services

        async def all_started() -> bool:
            return {t.get_name().split(":")[0] for t in asyncio.all_tasks()} >= {"health", "preload", "keepwarm"}

        await wait_until(all_started, timeout=10)
        ours = {t for t in asyncio.all_tasks() if t.get_name().split(":")[0] in _BACKGROUND}
        assert services.health.running
    assert all(task.done() for task in ours)
    assert not services.health.running
    assert not any(t.get_name().split(":")[0] in _BACKGROUND for t in asyncio.all_tasks())


_BACKGROUND = {"health", "preload", "keepwarm", "deep-check"}


async def test_deep_check_keeps_out_a_container_whose_generation_hangs_until_it_answers_again() -> None:
    ttft = 0.5
    async with router_fleet(
        TWO_CONTAINERS, settings={"health_interval": 0.2, "deep_check_interval": 0.2, "ttft_timeout": ttft}
    ) as fleet:
        await fleet.wait_warm()
        # `GET /` and the listings still answer; only generation hangs
        await fleet.backends["a"].add_fault("hang", -1, model=MODEL, path="/api/generate")
        await wait_until(reports(fleet, "a", "ejected"), timeout=5)
        probed = (await container_status(fleet, "a"))["last_probe"]
        seen = {probed}

        async def probed_thrice_more() -> bool:  # good probes: `GET /` and the listings answer
            seen.add((await container_status(fleet, "a"))["last_probe"])
            return len(seen) > 3

        await wait_until(probed_thrice_more, timeout=10)
        status = await container_status(fleet, "a")
        assert status["state"] in ("ejected", "probation") and "deep check" in status["ejection_reason"]  # ...still out
        # a's chat path does not hang (only /api/generate does): had the router sent it there, a would have answered
        reply = await chat(fleet)
        assert reply.status == 200 and reply.container == "b"
        await fleet.backends["a"].clear_faults()
        await wait_until(reports(fleet, "a", "up"), timeout=5)


async def test_a_malformed_answer_is_a_failed_probe_and_the_health_task_keeps_running() -> None:
    answers = {"ps": b"[]"}  # a list where Ollama sends an object

    async def root(request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")

    async def version(request: web.Request) -> web.Response:
        return web.json_response({"version": "0.12.6"})

    async def ps(request: web.Request) -> web.Response:
        return web.Response(body=answers["ps"], content_type="application/json")

    async def tags(request: web.Request) -> web.Response:
        return web.json_response({"models": []})

    app = web.Application()
    app.router.add_get("/", root)
    app.router.add_get("/api/version", version)
    app.router.add_get("/api/ps", ps)
    app.router.add_get("/api/tags", tags)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    catalog = parse_catalog(
        textwrap.dedent(f"""
        version: 1
        containers:
          a: {{url: "http://127.0.0.1:{port}"}}
        models:
          llama3.2:3b: {{containers: [a]}}
        """),
        "unit.yaml",
    ).catalog
    fleet = fleet_of(catalog, max_queue=1)
    state = fleet.containers["a"]
    health = HealthMonitor(fleet, interval=0.05, probe_timeout=1.0)
    try:
        health.start()

        async def refused() -> bool:
            return state.phase is Phase.DOWN and "AttributeError" in (state.last_error or "")

        await wait_until(refused, timeout=5)
        assert health.running
        answers["ps"] = b'{"models":[{"model":"llama3.2:3b","expires_at":"2318-01-01T00:00:00Z"}]}'

        async def up() -> bool:
            return state.phase is Phase.UP

        await wait_until(up, timeout=3)
        assert list(state.loaded) and state.version == "0.12.6"
    finally:
        await health.stop()
        await state.client.close()
        await runner.cleanup()
