"""`/healthz` (the process answers) and `/readyz` (preload done and every model
has a reachable container), as an orchestrator sees them."""

from __future__ import annotations

from tests.harness import RouterFleet, router_fleet
from tests.server.support import CATALOG, MESSAGES, QWEN, eventually, http

FAST_PROBES = {"health_interval": 0.2, "probe_timeout": 1.0}


async def _is(fleet: RouterFleet, status: int) -> bool:
    return (await http(fleet, "GET", "/readyz")).status == status


async def test_not_ready_while_preloading_then_ready() -> None:
    async with router_fleet(CATALOG, emulator={"load_time": 0.6}, wait_ready=False) as fleet:
        reply = await http(fleet, "GET", "/readyz")
        assert reply.status == 503
        assert "preloading models" in reply.json()["reasons"]
        assert (await http(fleet, "GET", "/healthz")).status == 200
        await fleet.wait_ready()
        assert (await http(fleet, "GET", "/readyz")).json() == {"ready": True}


async def test_not_ready_while_a_model_has_no_reachable_container() -> None:
    async with router_fleet(CATALOG, subprocess_containers={"q"}, settings=FAST_PROBES) as fleet:
        q = fleet.backends["q"]
        q.kill()
        assert await eventually(lambda: _is(fleet, 503)), "readyz never noticed the dead container"
        reply = await http(fleet, "GET", "/readyz")
        assert reply.json()["models_without_container"] == [QWEN]
        assert (await http(fleet, "GET", "/healthz")).json() == {"status": "ok"}
        unavailable = await http(fleet, "POST", "/v1/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES})
        assert unavailable.status == 503 and unavailable.headers["Retry-After"]
        assert unavailable.json()["error"]["message"]
        # the other models still answer
        served = await http(fleet, "POST", "/api/chat", json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": False})
        assert served.status == 200
        await q.restart()
        assert await eventually(lambda: _is(fleet, 200), timeout=10), "readyz never saw the container back"
        back = await http(fleet, "POST", "/api/chat", json={"model": "gpt-4o", "messages": MESSAGES, "stream": False})
        assert back.status == 200 and back.headers["X-Router-Container"] == "q"

