"""The Python entry points others build on: create_app, run_emulator, the harness."""

from __future__ import annotations

import ollama

from router.emulator.server import EmulatorConfig, create_app, run_emulator


async def test_run_emulator_in_the_current_loop():
    running = await run_emulator(EmulatorConfig(port=0, models=["llama3.2"]))
    try:
        assert running.port > 0 and running.url == f"http://127.0.0.1:{running.port}"
        reply = await ollama.AsyncClient(host=running.url).generate(model="llama3.2", prompt="hi")
        assert reply.done and running.emulator.stats.requests == 1
    finally:
        await running.close()


async def test_create_app_under_the_aiohttp_test_client(aiohttp_client):
    client = await aiohttp_client(create_app(EmulatorConfig(models=["llama3.2"], check_host=False)))
    response = await client.post("/api/chat", json={"model": "llama3.2", "messages": [{"role": "user", "content": "x"}]})
    assert response.status == 200 and response.headers["Content-Type"] == "application/x-ndjson"
    assert (await response.read()).count(b"\n") == 25


def test_handle_exposes_live_state(emulator):
    emu = emulator(models=["llama3.2"], embedding_models=[])
    assert emu.pid is None and emu.state is not None
    assert [m.display for m in emu.state.store.listing()] == ["llama3.2:latest"]
