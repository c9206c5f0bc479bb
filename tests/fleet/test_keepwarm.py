"""Models stay warm: preloaded before ready, kept past short keep-alives, reloaded when gone."""

from __future__ import annotations

import time

import aiohttp

from router.fleet.health import parse_timestamp
from tests.fleet.support import FAST, MODEL, TWO_CONTAINERS, post, ps_models, wait_until
from tests.harness import ONE_CONTAINER, catalog_yaml, router_fleet


async def test_preload_happens_before_readyz_is_ready() -> None:
    async with router_fleet(
        TWO_CONTAINERS, emulator={"load_time": 1.0}, settings=FAST, wait_ready=False
    ) as fleet:
        async with fleet.session.get(fleet.url + "/readyz") as response:
            assert response.status == 503
            assert "preloading models" in (await response.json())["reasons"]
        await fleet.wait_ready()
        for name, backend in fleet.backends.items():
            assert MODEL in await ps_models(fleet, name)  # loaded when ready, not on first use
            stats = await backend.stats()
            assert stats["loads"] == 1 and stats["requests"] == 1  # the router's own ping, no client


async def test_idle_models_stay_loaded_past_their_keep_alive() -> None:
    """Loaded with a 2 s keep-alive (the catalog's, and the container's own default), an idle
    model is still loaded long after: the router's pings renew it before it expires."""
    catalog = catalog_yaml("a", "b", models={MODEL: "containers: [a, b], keep_alive: 2s"})
    async with router_fleet(catalog, emulator={"keep_alive": "2s"}, settings=FAST) as fleet:
        await fleet.wait_warm()
        first = {name: parse_timestamp((await ps_models(fleet, name))[MODEL]["expires_at"]) or 0.0 for name in fleet.backends}
        pings = (await fleet.status())["counters"]["keepwarm_pings"]

        async def renewed_past_first_expiry() -> bool:
            # well past the keep-alive the models were first loaded with, and renewed several times
            return time.time() > max(first.values()) + 2.0 and (await fleet.status())["counters"]["keepwarm_pings"] >= pings + 6

        await wait_until(renewed_past_first_expiry, timeout=30)
        for name, backend in fleet.backends.items():
            loaded = await ps_models(fleet, name)
            assert MODEL in loaded, f"{name} unloaded the idle model"
            assert (parse_timestamp(loaded[MODEL]["expires_at"]) or 0.0) > first[name]
            assert (await backend.stats())["unloads"] == 0


async def test_a_client_setting_a_shorter_keep_alive_does_not_unload_the_model() -> None:
    async with router_fleet(ONE_CONTAINER, settings=FAST) as fleet:
        await fleet.wait_warm()
        reply = await post(fleet, "/api/generate", {"model": MODEL, "prompt": "hi", "stream": False, "keep_alive": "1s"})
        assert reply.status == 200
        past = time.time() + 2.0

        async def past_the_clients_keep_alive() -> bool:  # and re-pinged since the preload
            return time.time() > past and (await fleet.status())["counters"]["keepwarm_pings"] >= 2

        await wait_until(past_the_clients_keep_alive)
        backend = fleet.backends["a"]
        assert (await backend.stats())["unloads"] == 0
        expires = (await ps_models(fleet, "a"))[MODEL]["expires_at"]
        status = await fleet.status()
        assert status["counters"]["keepwarm_pings"] >= 2  # preload, then the re-ping
        loaded = status["containers"][0]["loaded"]
        assert [m["model"] for m in loaded] == [MODEL] and loaded[0]["expires_at"]
        expires_in = (parse_timestamp(expires) or 0) - time.time()
        assert expires_in > 3600  # re-pinged with the catalog's keep_alive (24h), not the client's 1s


async def test_a_model_that_went_missing_is_reloaded() -> None:
    async with router_fleet(ONE_CONTAINER, settings=FAST) as fleet:
        await fleet.wait_warm()
        backend = fleet.backends["a"]
        # someone unloads it behind the router's back (`ollama stop`)
        await backend.request("POST", "/api/generate", json={"model": MODEL, "keep_alive": 0})
        assert (await backend.stats())["unloads"] == 1

        async def reloaded() -> bool:
            return MODEL in await ps_models(fleet, "a")

        await wait_until(reloaded, timeout=5)
        assert (await backend.stats())["loads"] == 2


async def test_a_load_does_not_depend_on_the_client_that_needed_it() -> None:
    """Ollama aborts a load when the client that triggered it leaves; the router's own ping does not leave."""
    async with router_fleet(
        ONE_CONTAINER, emulator={"load_time": 1.0}, settings={**FAST, "ttft_timeout": 30}
    ) as fleet:
        backend = fleet.backends["a"]
        await backend.request("POST", "/api/generate", json={"model": MODEL, "keep_alive": 0})
        # a client asks, then gives up half-way through the load
        try:
            await post(fleet, "/api/generate", {"model": MODEL, "prompt": "hi", "stream": False}, timeout=0.5)
        except (TimeoutError, aiohttp.ClientError):
            pass

        async def reloaded() -> bool:
            return MODEL in await ps_models(fleet, "a")

        await wait_until(reloaded, timeout=6)
        stats = await backend.stats()
        assert stats["cancelled"] >= 1  # the client's request was abandoned...
        assert stats["loads"] == 2  # ...yet the model is loaded again (preload, then the router's ping)
        await fleet.wait_warm()


