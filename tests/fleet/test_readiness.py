"""`/readyz` counts a model as servable when one of its own containers holds it
loaded, or else one of its fallback models' containers holds that one loaded."""

from __future__ import annotations

from tests.fleet.support import (
    FALLBACK,
    FAST,
    chat,
    container_status,
    unload_behind_the_routers_back,
    wait_ready_state,
    wait_until,
)
from tests.harness import router_fleet

LLAMA, QWEN = "llama3.2:3b", "qwen2.5:7b"


async def test_a_model_whose_containers_are_down_is_ready_while_its_fallback_serves() -> None:
    async with router_fleet(FALLBACK, subprocess_containers={"a"}, settings=FAST) as fleet:
        await fleet.wait_warm()
        fleet.backends["a"].kill()

        async def a_down() -> bool:
            return (await container_status(fleet, "a"))["state"] == "down"

        await wait_until(a_down)
        await wait_ready_state(fleet, True)  # llama's own container is gone, its fallback is loaded
        models = {m["model"]: m for m in (await fleet.status())["models"]}
        assert models[LLAMA]["ready"] == [] and models[QWEN]["ready"] == ["b"]
        reply = await chat(fleet)
        assert reply.status == 200 and reply.headers["X-Router-Model"] == QWEN  # what ready promised

        b = fleet.backends["b"]
        await b.add_fault("load_fail", -1)  # qwen cannot be loaded back on b either
        await unload_behind_the_routers_back(fleet, "b", QWEN)
        answer = await wait_ready_state(fleet, False)
        assert answer["models_without_container"] == [LLAMA, QWEN]

        await fleet.backends["a"].restart()  # llama's own container is back and loads it

        async def only_qwen_unserved() -> bool:
            async with fleet.session.get(fleet.url + "/readyz") as response:
                return (await response.json()).get("models_without_container") == [QWEN]

        await wait_until(only_qwen_unserved, timeout=15)
        await b.clear_faults()
        await wait_ready_state(fleet, True)
