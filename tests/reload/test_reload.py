"""One reload at a time, looked at closely: what happens to the requests of
the catalog that leaves, a refused catalog, settings, the admin key.

`ollama-router serve` runs as a child process in front of real emulators;
catalogs are files under tmp_path, replaced the way editors replace them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.access.support import keys_add
from tests.conftest import EmulatorFactory
from tests.reload.support import (
    LLAMA,
    QWEN,
    Load,
    Served,
    Timeline,
    catalog_text,
    digest,
    messages,
    reload_by_api,
    router_status,
    send,
    serve,
    until,
    validate,
    write_atomically,
)


def _container(status: dict[str, object], name: str) -> dict[str, object] | None:
    return next((c for c in status["containers"] if c["name"] == name), None)  # type: ignore[attr-defined]


async def _gone(session: aiohttp.ClientSession, served: Served, name: str) -> None:
    """Until /router/status no longer lists container `name`."""

    async def gone() -> bool:
        return _container(await router_status(session, served), name) is None

    await until(gone, f"container {name} to be dropped")


def _queued(session: aiohttp.ClientSession, served: Served, name: str, *, in_flight: int, queued: int) -> Callable[[], Awaitable[bool]]:
    """A condition: container `name` has `in_flight` requests running and `queued` waiting."""

    async def check() -> bool:
        container = _container(await router_status(session, served), name)
        return container is not None and (container["in_flight"], container["queued"]) == (in_flight, queued)

    return check


async def test_requests_queued_on_a_removed_container_are_served_by_it(emulator: EmulatorFactory, tmp_path: Path) -> None:
    x = emulator(models=[QWEN], embedding_models=[], tokens_per_second=20, response_tokens=60, num_parallel=1)
    y = emulator(models=[QWEN], embedding_models=[])
    path = tmp_path / "catalog.yaml"
    path.write_text(catalog_text({"x": x.url}, {QWEN: (["x"], [])}, parallel={"x": 1}))
    async with serve(path, tmp_path / "router.log") as served, aiohttp.ClientSession() as session:
        running = asyncio.create_task(send(session, served.url, "stream", QWEN, tokens=60))  # three seconds on x
        await until(_queued(session, served, "x", in_flight=1, queued=0), "a stream in flight on x")
        waiting = asyncio.create_task(send(session, served.url, "stream", QWEN, tokens=4))
        await until(_queued(session, served, "x", in_flight=1, queued=1), "a request queued on x")
        write_atomically(path, catalog_text({"y": y.url}, {QWEN: (["y"], [])}))
        code, answer = await reload_by_api(session, served)
        assert (code, answer["result"], answer["added"], answer["removed"]) == (200, "reloaded", ["y"], ["x"]), answer
        after = await send(session, served.url, "stream", QWEN)
        assert (after.status, after.container, after.complete) == (200, "y", True)
        for outcome in (await running, await waiting):  # both started under the catalog that had x
            assert (outcome.status, outcome.container, outcome.complete) == (200, "x", True), outcome
        await _gone(session, served, "x")


async def _raw_headers(served: Served, body: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection that has sent a chat request's headers, its body not yet."""
    host, port = served.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /api/chat HTTP/1.1\r\nHost: " + f"{host}:{port}".encode()
        + b"\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    await writer.drain()
    return reader, writer


async def test_a_request_that_started_before_a_reload_finishes_under_the_old_catalog(
    emulator: EmulatorFactory, tmp_path: Path
) -> None:
    x = emulator(models=[LLAMA], embedding_models=[])
    y = emulator(models=[QWEN], embedding_models=[])
    path = tmp_path / "catalog.yaml"
    path.write_text(catalog_text({"x": x.url}, {LLAMA: (["x"], ["chat"])}))
    body = orjson.dumps({"model": "chat", "messages": messages(), "stream": False})
    async with serve(path, tmp_path / "router.log") as served, aiohttp.ClientSession() as session:
        reader, writer = await _raw_headers(served, body)
        try:
            # a later request's answer: the router has read the first one's headers by then (it started)
            async with session.get(served.url + "/healthz") as response:
                assert response.status == 200
            write_atomically(path, catalog_text({"y": y.url}, {QWEN: (["y"], ["chat"])}))  # chat is qwen on y now; x is gone
            code, answer = await reload_by_api(session, served)
            assert (code, answer["removed"]) == (200, ["x"]), answer
            now = await send(session, served.url, "openai", "chat")
            assert (now.status, now.container, now.served) == (200, "y", QWEN)
            # x stays (draining) while a request of its catalog has yet to reach it: four janitor rounds and more
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                x_state = _container(await router_status(session, served), "x")
                assert x_state is not None and x_state["state"] == "draining", x_state
                await asyncio.sleep(0.1)
            writer.write(body)
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
        lines = raw.partition(b"\r\n\r\n")[0].decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        assert lines[0].startswith("HTTP/1.1 200"), raw[:400]
        assert (headers["X-Router-Container"], headers["X-Router-Model"]) == ("x", LLAMA)
        await _gone(session, served, "x")


BAD = {
    # two problems at once: validate lists both, one line each
    "unknown names": "containers: [x, zz], aliases: [chat], fallback: [nope]",
    "YAML syntax": "containers: [x, aliases: [chat]",
}


def _with_llama(spec: str, url: str) -> str:
    return (
        "version: 1\nrouter: {health_interval: 1s}\ncontainers:\n"
        f"  x: {{url: '{url}'}}\nmodels:\n  {LLAMA}: {{{spec}}}\n"
    )


@pytest.mark.parametrize("how", ["sighup", "api", "watch"])
@pytest.mark.parametrize("bad", sorted(BAD))
async def test_a_bad_catalog_is_refused_as_validate_refuses_it_and_the_old_one_keeps_serving(
    emulator: EmulatorFactory, tmp_path: Path, how: str, bad: str
) -> None:
    x = emulator(models=[LLAMA], embedding_models=[])
    y = emulator(models=[QWEN], embedding_models=[])
    path = tmp_path / "catalog.yaml"
    good = _with_llama("containers: [x], aliases: [chat]", x.url)
    path.write_text(good)
    args = ["--watch"] if how == "watch" else []
    async with serve(path, tmp_path / "router.log", *args) as served, aiohttp.ClientSession() as session:
        before = (await router_status(session, served))["catalog"]
        assert (before["path"], before["sha256"], before["last_reload_error"]) == (str(path), digest(good), None)
        write_atomically(path, _with_llama(BAD[bad], x.url))
        expected = validate(path)
        assert expected.startswith(f"{path}:")
        if how == "sighup":
            served.sighup()
        elif how == "api":
            code, answer = await reload_by_api(session, served)
            assert (code, answer) == (422, {"result": "refused", "trigger": "api", "error": expected})
        [line] = await until(lambda: served.lines("catalog_reload_refused"), "the refusal in the log")
        assert (line["error"], line["level"]) == (expected, "error")
        status = (await router_status(session, served))["catalog"]
        assert status["last_reload_error"] == expected
        assert (status["sha256"], status["loaded_at"]) == (before["sha256"], before["loaded_at"])
        served_now = await send(session, served.url, "openai", "chat")  # the old catalog serves
        assert (served_now.status, served_now.container, served_now.served) == (200, "x", LLAMA)
        async with session.get(served.url + "/readyz") as response:
            assert response.status == 200

        fixed = catalog_text({"x": x.url, "y": y.url}, {LLAMA: (["x"], []), QWEN: (["y"], ["chat"])})
        write_atomically(path, fixed)
        if how == "sighup":
            served.sighup()
        elif how == "api":
            code, answer = await reload_by_api(session, served)
            assert (code, answer["result"]) == (200, "reloaded")
        await served.reloaded(fixed)
        status = (await router_status(session, served))["catalog"]
        assert status["last_reload_error"] is None and status["sha256"] == digest(fixed)
        assert status["loaded_at"] > before["loaded_at"]
        served_now = await send(session, served.url, "openai", "chat")
        assert (served_now.status, served_now.container, served_now.served) == (200, "y", QWEN)


async def test_run_time_settings_change_with_a_reload(emulator: EmulatorFactory, tmp_path: Path) -> None:
    """max_queue: a full container's queue closes; ttft_timeout: a hung container is left sooner."""
    x = emulator(models=[QWEN], embedding_models=[], tokens_per_second=20, response_tokens=60, num_parallel=1)
    y = emulator(models=[QWEN], embedding_models=[])
    path = tmp_path / "catalog.yaml"
    urls = {"x": x.url, "y": y.url}
    path.write_text(catalog_text(urls, {QWEN: (["x"], [])}, parallel={"x": 1}))
    async with serve(path, tmp_path / "router.log") as served, aiohttp.ClientSession() as session:
        running = asyncio.create_task(send(session, served.url, "stream", QWEN, tokens=60))
        await until(_queued(session, served, "x", in_flight=1, queued=0), "a stream in flight on x")
        waiting = asyncio.create_task(send(session, served.url, "openai", QWEN))
        await until(_queued(session, served, "x", in_flight=1, queued=1), "a request queued on x (max_queue 64)")

        write_atomically(path, catalog_text(urls, {QWEN: (["x"], [])}, parallel={"x": 1}, router="health_interval: 1s, max_queue: 0"))
        code, answer = await reload_by_api(session, served)
        assert (code, answer["result"], answer.get("restart_needed")) == (200, "reloaded", None), answer
        refused = await send(session, served.url, "openai", QWEN)
        assert refused.status == 429 and "fleet_at_capacity" in (refused.error or ""), refused
        assert all(o.status == 200 for o in (await running, await waiting))

        # a hung primary: with ttft_timeout 1s the request goes to its sibling
        write_atomically(path, catalog_text(urls, {QWEN: (["x", "y"], [])}, router="health_interval: 1s, ttft_timeout: 1s"))
        code, answer = await reload_by_api(session, served)
        assert (code, answer["result"]) == (200, "reloaded"), answer
        x.add_fault("hang", count=1)
        moved_on = await send(session, served.url, "openai", QWEN)
        assert (moved_on.status, moved_on.container) == (200, "y"), moved_on


async def test_restart_only_settings_are_reported_and_keep_their_running_value(emulator: EmulatorFactory, tmp_path: Path) -> None:
    x = emulator(models=[QWEN], embedding_models=[])
    path = tmp_path / "catalog.yaml"
    path.write_text(catalog_text({"x": x.url}, {QWEN: (["x"], [])}, router="max_body_bytes: 100000"))
    async with serve(path, tmp_path / "router.log") as served, aiohttp.ClientSession() as session:
        write_atomically(path, catalog_text({"x": x.url}, {QWEN: (["x"], [])}, router="max_body_bytes: 1000, header_timeout: 5s"))
        code, answer = await reload_by_api(session, served)
        assert (code, answer["result"], answer["restart_needed"]) == (200, "reloaded", ["header_timeout", "max_body_bytes"])
        [line] = served.lines("catalog_reloaded")
        assert line["restart_needed"] == ["header_timeout", "max_body_bytes"]
        big = {"model": QWEN, "messages": [{"role": "user", "content": "x" * 5000}], "stream": False}
        async with session.post(served.url + "/api/chat", json=big) as response:
            assert response.status == 200  # the running limit (100000) holds until a restart
        code, answer = await reload_by_api(session, served)  # nothing else changed: still reported
        assert (answer["result"], answer["restart_needed"]) == ("unchanged", ["header_timeout", "max_body_bytes"])


async def test_reloading_by_api_needs_an_admin_key(emulator: EmulatorFactory, tmp_path: Path) -> None:
    x = emulator(models=[QWEN], embedding_models=[])
    keys = tmp_path / "keys.yaml"
    tokens = {}
    for name, args in {"ops": ["--admin"], "app": []}.items():
        code, output = keys_add(keys, name, *args)
        assert code == 0, output.stderr
        tokens[name] = output.key
    path = tmp_path / "catalog.yaml"
    path.write_text(catalog_text({"x": x.url}, {QWEN: (["x"], [])}))
    async with serve(path, tmp_path / "router.log", "--api-keys", str(keys)) as served, aiohttp.ClientSession() as session:
        write_atomically(path, catalog_text({"x": x.url}, {QWEN: (["x"], ["chat"])}))
        code, answer = await reload_by_api(session, served)
        assert code == 401, answer
        code, answer = await reload_by_api(session, served, {"Authorization": f"Bearer {tokens['app']}"})
        assert code == 403, answer
        assert not served.lines("catalog_reloaded")
        code, answer = await reload_by_api(session, served, {"Authorization": f"Bearer {tokens['ops']}"})
        assert (code, answer["result"]) == (200, "reloaded")
        status = await router_status(session, served, {"Authorization": f"Bearer {tokens['ops']}"})
        assert status["catalog"]["sha256"] == digest(path.read_text())


async def test_moving_a_model_to_another_gpu_fails_no_request(emulator: EmulatorFactory, tmp_path: Path) -> None:
    """The README's sequence, its reload half: the model moves from the container on GPU 0
    to a new one on GPU 1 (each an emulator here, already started as `up` would have)
    while clients keep streaming; the new one is preloaded before it takes a request,
    the old one finishes its streams and is dropped."""
    gpu0 = emulator(subprocess=True, models=[LLAMA], embedding_models=[], tokens_per_second=20, num_parallel=4, load_time=0.5)
    gpu1 = emulator(subprocess=True, models=[LLAMA], embedding_models=[], tokens_per_second=20, num_parallel=4, load_time=0.5)
    path = tmp_path / "catalog.yaml"
    before = catalog_text({"llama-gpu0": gpu0.url}, {LLAMA: (["llama-gpu0"], ["gpt-4o-mini"])})
    after = catalog_text({"llama-gpu1": gpu1.url}, {LLAMA: (["llama-gpu1"], ["gpt-4o-mini"])})
    path.write_text(before)
    timeline = Timeline()
    timeline.add(before)
    async with serve(path, tmp_path / "router.log") as served, aiohttp.ClientSession() as session:
        load = Load(served.url, timeline, [LLAMA, "gpt-4o-mini"], streams=8, others=2)
        load.start()
        try:
            streaming = await until(lambda: load.in_flight("llama-gpu0"), "streams on llama-gpu0")
            assert gpu1.stats()["requests"] == 0  # nothing has loaded the model there yet
            write_atomically(path, after)
            timeline.pending = timeline.add(after)
            served.sighup()
            await served.reloaded(after)
            timeline.confirmed, timeline.pending = 1, None
            # loaded by the router's own ping before the swap: no client waited for that load
            assert gpu1.stats()["loads"] == 1 and gpu1.stats()["by_model"] == {LLAMA: 1}, gpu1.stats()
            await until(lambda: all(o.ended for o in streaming), "the streams on llama-gpu0 to end")
            await until(lambda: sum(1 for o in load.outcomes if o.complete and o.versions == (1, 1)) >= 20, "requests on llama-gpu1")
        finally:
            outcomes = await load.stop()
        await _gone(session, served, "llama-gpu0")
    assert all(o.status == 200 and o.complete for o in streaming)
    failed = [o for o in outcomes if o.status != 200 or not o.complete]
    assert not failed, failed[:5]
    assert all(o.container == ("llama-gpu0" if o.versions[1] == 0 else "llama-gpu1") for o in outcomes if o.versions[0] == o.versions[1])
