"""Router replicas (`ollama-router serve --redis`, real processes) in front of one
emulated container, sharing their limits through a real redis-server."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import ollama
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.access.support import make_keys
from tests.conftest import EmulatorFactory
from tests.limits.redis_server import RedisServer
from tests.limits.support import (
    MESSAGES,
    MODEL,
    PROMPT,
    RouterProcess,
    catalog_text,
    stored,
    until,
    until_answer,
)


class StartRouter(Protocol):
    def __call__(self, catalog: Path, redis_url: str, *args: str, name: str = "router") -> RouterProcess: ...


@pytest.fixture
def start_router(tmp_path: Path) -> Iterator[StartRouter]:
    started: list[RouterProcess] = []

    def start(catalog: Path, redis_url: str, *args: str, name: str = "router") -> RouterProcess:
        router = RouterProcess(tmp_path, catalog, redis_url, *args, name=name)
        started.append(router)
        return router

    yield start
    for router in started:
        router.stop()


def write_catalog(tmp_path: Path, backend_url: str, namespace: str, **options: Any) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(catalog_text(backend_url, namespace, **options))
    return path


async def metrics(router: RouterProcess, key: str | None = None) -> dict[str, float]:
    status, body = await router.get("/metrics", key)
    assert status == 200
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name.startswith("ollama_router_limits_")
    }


async def test_a_key_limited_to_60_a_minute_gets_60_from_two_routers_together(
    emulator: EmulatorFactory, tmp_path: Path, redis_url: str, namespace: str, start_router: StartRouter
) -> None:
    backend = emulator(models=[MODEL], embedding_models=[], subprocess=True, num_parallel=8)
    catalog = write_catalog(tmp_path, backend.url, namespace, num_parallel=8)
    keys_file = tmp_path / "keys.yaml"
    keys = make_keys(keys_file, {"team": ["--rate-limit", "60"]})  # burst: 60 at once
    routers = [start_router(catalog, redis_url, "--api-keys", str(keys_file), name=name) for name in ("a", "b")]
    for router in routers:
        await router.wait_ready()
    clients = [router.openai(keys["team"]) for router in routers]
    outcomes: list[tuple[int, int]] = []
    gate = asyncio.Semaphore(8)

    async def one(i: int) -> None:
        async with gate:
            try:
                await clients[i % 2].chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
                outcomes.append((i % 2, 200))
            except openai.RateLimitError as exc:
                assert exc.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
                outcomes.append((i % 2, 429))

    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(one(i) for i in range(150)))
    elapsed = loop.time() - started
    served = sum(1 for _, status in outcomes if status == 200)
    # the burst of 60, plus the one token a second that refilled meanwhile; each router alone would give 60
    assert 60 <= served <= 60 + math.ceil(elapsed) + 1, (served, elapsed)
    assert {router for router, status in outcomes if status == 200} == {0, 1}
    assert {router for router, status in outcomes if status == 429} == {0, 1}


async def test_two_routers_and_two_workers_never_put_more_than_num_parallel_on_a_container(
    emulator: EmulatorFactory, tmp_path: Path, redis_url: str, namespace: str, start_router: StartRouter
) -> None:
    # the emulator itself would take 4 at once: only the routers' shared cap keeps it at 2
    backend = emulator(models=[MODEL], embedding_models=[], subprocess=True, num_parallel=4, tokens_per_second=25, response_tokens=6)
    catalog = write_catalog(tmp_path, backend.url, namespace, num_parallel=2)
    a = start_router(catalog, redis_url, "--workers", "2", name="a")  # three router processes in all
    b = start_router(catalog, redis_url, name="b")
    await a.wait_ready()
    await b.wait_ready()
    clients = [a.openai(), b.openai()]
    replies = await asyncio.gather(*(
        clients[i % 2].chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
        for i in range(16)
    ))
    assert all(reply.choices[0].message.content for reply in replies)
    stats = backend.stats()
    assert stats["requests"] == 16
    assert stats["max_in_flight"] == 2


async def test_redis_killed_mid_load_fail_open_keeps_serving_on_local_limits(
    emulator: EmulatorFactory, tmp_path: Path, private_redis: RedisServer, namespace: str, start_router: StartRouter
) -> None:
    backend = emulator(models=[MODEL], embedding_models=[], subprocess=True, num_parallel=4)
    catalog = write_catalog(tmp_path, backend.url, namespace, num_parallel=4, redis_failure="open")
    router = start_router(catalog, private_redis.url)
    await router.wait_ready()
    assert (await router.limits())["connected"] is True
    client = router.openai()
    statuses: list[int] = []
    stop = asyncio.Event()

    async def load() -> None:
        while not stop.is_set():
            try:
                await client.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
                statuses.append(200)
            except openai.APIStatusError as exc:
                statuses.append(exc.status_code)

    workers = [asyncio.create_task(load()) for _ in range(4)]
    try:
        await until(lambda: len(statuses) >= 20)
        private_redis.kill()
        await until_answer(router.url + "/router/status", lambda _, body: b'"connected":false' in body, 10)
        after = len(statuses)
        await until(lambda: len(statuses) >= after + 40)
    finally:
        stop.set()
        await asyncio.gather(*workers)
    assert set(statuses) == {200}
    limits = await router.limits()
    assert limits["in_force"] == "local fallback" and limits["losses"] == 1 and limits["last_error"]
    assert (await metrics(router))["ollama_router_limits_fallback"] == 1.0
    private_redis.start()
    await until_answer(router.url + "/router/status", lambda _, body: b'"connected":true' in body, 15)
    await client.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
    seen = await metrics(router)
    assert seen["ollama_router_limits_fallback"] == 0.0 and seen["ollama_router_limits_store_up"] == 1.0
    assert seen["ollama_router_limits_store_losses_total"] == 1.0


async def test_redis_killed_fail_closed_answers_503_in_each_apis_shape(
    emulator: EmulatorFactory, tmp_path: Path, private_redis: RedisServer, namespace: str, start_router: StartRouter
) -> None:
    backend = emulator(models=[MODEL], embedding_models=[], subprocess=True, num_parallel=4)
    catalog = write_catalog(tmp_path, backend.url, namespace, redis_failure="closed")
    router = start_router(catalog, private_redis.url)
    await router.wait_ready()
    client = router.openai()
    await client.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
    private_redis.kill()
    await until_answer(router.url + "/readyz", lambda status, _: status == 503, 10)
    with pytest.raises(openai.APIStatusError) as refused:
        await client.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
    assert refused.value.status_code == 503
    assert refused.value.response.headers["Retry-After"] == "1"
    error = refused.value.body
    assert isinstance(error, dict) and error["type"] == "api_error" and error["code"] == "service_unavailable"
    assert "limits store" in error["message"]
    with pytest.raises(ollama.ResponseError) as native:
        await ollama.AsyncClient(host=router.url).chat(model=MODEL, messages=MESSAGES)
    assert native.value.status_code == 503 and "limits store" in native.value.error
    status, body = await router.get("/readyz")
    assert status == 503 and b"limits store" in body
    private_redis.start()
    await until_answer(router.url + "/readyz", lambda status, _: status == 200, 15)
    reply = await client.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
    assert reply.choices[0].message.content


async def test_a_replica_killed_with_sigkill_frees_its_slots_within_the_lease_time(
    emulator: EmulatorFactory, tmp_path: Path, redis_url: str, namespace: str, start_router: StartRouter
) -> None:
    lease = 2.0
    backend = emulator(models=[MODEL], embedding_models=[], subprocess=True, num_parallel=4, tokens_per_second=10, response_tokens=300)
    catalog = write_catalog(tmp_path, backend.url, namespace, num_parallel=2, redis_lease=f"{lease:g}s")
    a = start_router(catalog, redis_url, name="a")
    b = start_router(catalog, redis_url, name="b")
    await a.wait_ready()
    await b.wait_ready()
    streams = [await a.openai().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True) for _ in range(2)]  # type: ignore[arg-type]
    for stream in streams:
        await anext(aiter(stream))  # both generating: a holds both slots
    waiting = asyncio.create_task(
        b.openai().chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)  # type: ignore[arg-type]
    )
    await until_answer(b.url + "/router/status", lambda _, body: b'"queued":1' in body, 10)
    a.kill()
    # a's slots come free at most one lease after its last renewal; b's next sweep hands one over
    reply = await asyncio.wait_for(waiting, 2 * lease + 3)
    assert reply.choices[0].message.content
    for stream in streams:
        await stream.close()


async def test_a_keys_concurrency_is_shared_and_redis_holds_only_names(
    emulator: EmulatorFactory, tmp_path: Path, redis_url: str, namespace: str, start_router: StartRouter
) -> None:
    backend = emulator(models=[MODEL], embedding_models=[], subprocess=True, num_parallel=4, tokens_per_second=10, response_tokens=300)
    catalog = write_catalog(tmp_path, backend.url, namespace, num_parallel=4)
    keys_file = tmp_path / "keys.yaml"
    keys = make_keys(keys_file, {"solo": ["--max-concurrent", "1", "--rate-limit", "600"]})
    a = start_router(catalog, redis_url, "--api-keys", str(keys_file), name="a")
    b = start_router(catalog, redis_url, "--api-keys", str(keys_file), name="b")
    await a.wait_ready()
    await b.wait_ready()
    stream = await a.openai(keys["solo"]).chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    await anext(aiter(stream))
    with pytest.raises(openai.RateLimitError) as refused:
        await b.openai(keys["solo"]).chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)  # type: ignore[arg-type]
    assert "max_concurrent" in refused.value.message
    blob = stored(redis_url, namespace)
    assert b"solo" in blob  # the key's name counts its requests
    assert keys["solo"].encode() not in blob and PROMPT.encode() not in blob
    await stream.close()  # the client leaves: a ends the request and gives the count back
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        try:
            reply = await b.openai(keys["solo"]).chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)  # type: ignore[arg-type]
            break
        except openai.RateLimitError:
            assert asyncio.get_running_loop().time() < deadline, "the key's count never came back"
            await asyncio.sleep(0.1)
    assert reply.choices[0].message.content
