"""What the outside security review found (issue #12), one test or more per finding.

1. A body naming its model twice (a case variant, a duplicate) cannot slip past an allowlist.
3. Client-chosen names cost neither unbounded memory nor log volume.
4. A web page cannot drive the router (Origin and Host checks, CORS preflights).
5. One key cannot take every slot (per-key concurrency, fair queues, a full fleet's own code).
8. aiohttp's own 400s come in JSON and never echo the request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest
import pytest_asyncio
import structlog

from tests.access.support import CATALOG, LLAMA, MESSAGES, QWEN, Keyed, keys_add
from tests.harness import RouterFleet, catalog_yaml, router_fleet

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def raw_post(url: str, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as session:
        async with session.post(url + path, data=body, headers={"Content-Type": "application/json", **(headers or {})}) as response:
            return response.status, dict(response.headers), await response.read()


async def served(fleet: RouterFleet) -> dict[str, int]:
    return {name: (await backend.stats())["requests"] for name, backend in fleet.backends.items()}


# -- 1. case-variant and duplicate model keys ---------------------------------------------

SMUGGLED = [
    pytest.param(b'{"model": "llama3.2:3b", "Model": "qwen2.5:7b", "messages": []}', id="Model"),
    pytest.param(b'{"MODEL": "qwen2.5:7b", "model": "gpt-4o-mini", "messages": []}', id="MODEL-first"),
    pytest.param(b'{"model": "llama3.2:3b", "Mod\\u0065l": "qwen2.5:7b", "messages": []}', id="escaped"),
    pytest.param(b'{"model": "llama3.2:3b", "model": "qwen2.5:7b", "messages": []}', id="duplicate"),
]


@pytest.mark.parametrize("body", SMUGGLED)
@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
async def test_a_second_spelling_of_model_is_refused_and_reaches_no_container(keyed: Keyed, path: str, body: bytes) -> None:
    before = await served(keyed.fleet)
    status, _headers, reply = await raw_post(keyed.url, path, body, keyed.auth("team"))
    assert status == 400
    error = orjson.loads(reply)["error"]
    message = error["message"] if path.startswith("/v1/") else error
    assert "model" in message.lower()
    if path.startswith("/v1/"):
        assert error["type"] == "invalid_request_error" and error["param"] == "model"
    assert await served(keyed.fleet) == before


async def test_show_refuses_a_second_spelling_of_name_too(keyed: Keyed) -> None:
    before = await served(keyed.fleet)
    for body in (b'{"name": "llama3.2:3b", "NAME": "qwen2.5:7b"}', b'{"model": "llama3.2:3b", "Name": "qwen2.5:7b"}'):
        status, _, reply = await raw_post(keyed.url, "/api/show", body, keyed.auth("team"))
        assert status == 400, reply
    assert await served(keyed.fleet) == before


async def test_the_openai_sdk_cannot_smuggle_a_model_past_the_allowlist(keyed: Keyed) -> None:
    client = keyed.openai("team")
    with pytest.raises(openai.BadRequestError) as raised:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_body={"Model": QWEN})  # type: ignore[arg-type]
    assert raised.value.status_code == 400
    ok = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert ok.choices[0].message.content


async def test_a_field_named_model_inside_the_body_is_not_mistaken_for_a_second_model(keyed: Keyed) -> None:
    tool = {"type": "function", "function": {"name": "pick", "parameters": {"type": "object", "properties": {"Model": {"type": "string"}, "model": {"type": "string"}}}}}
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, "tools": [tool]})
    status, headers, _ = await raw_post(keyed.url, "/v1/chat/completions", body, keyed.auth("team"))
    assert status == 200 and headers["X-Router-Model"] == LLAMA
    same_twice = b'{"model": "gpt-4o-mini", "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
    status, _, _ = await raw_post(keyed.url, "/api/chat", same_twice, keyed.auth("team"))
    assert status == 200  # the same name twice means the same model to Ollama and the router


# -- 3. names that cost memory and logs -------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def open_fleet() -> AsyncIterator[RouterFleet]:
    async with router_fleet(CATALOG) as fleet:
        yield fleet


async def test_huge_model_names_are_refused_before_any_lookup_and_never_logged_whole(open_fleet: RouterFleet) -> None:
    runtime = open_fleet.services.runtime
    cached = len(runtime._resolved)
    name = "x" * (2 * 1024 * 1024)
    with structlog.testing.capture_logs() as logs:
        for index in range(5):
            body = orjson.dumps({"model": f"{index}{name}", "messages": MESSAGES})
            for path in ("/api/chat", "/v1/chat/completions"):
                status, _, reply = await raw_post(open_fleet.url, path, body)
                assert status == 400 and len(reply) < 1024
    assert len(runtime._resolved) == cached
    assert all(len(orjson.dumps(line)) < 2048 for line in logs)


async def test_unknown_names_are_echoed_cut_and_never_cached(open_fleet: RouterFleet) -> None:
    runtime = open_fleet.services.runtime
    long_name = "m" * 79 + ":" + "t" * 79  # a valid name, nearly as long as one can be
    status, _, reply = await raw_post(open_fleet.url, "/api/chat", orjson.dumps({"model": long_name, "messages": MESSAGES}))
    assert status == 404 and len(orjson.loads(reply)["error"]) < 200
    cached = len(runtime._resolved)
    await asyncio.gather(*(
        raw_post(open_fleet.url, "/api/chat", orjson.dumps({"model": f"made-up-{i}", "messages": MESSAGES})) for i in range(200)
    ))
    assert len(runtime._resolved) == cached
    status, _, _ = await raw_post(open_fleet.url, "/api/chat", orjson.dumps({"model": "LLaMA3.2:3B", "messages": MESSAGES}))
    assert status == 200 and len(runtime._resolved) == cached + 1  # names that resolve are kept


# -- 4. browsers and DNS rebinding ---------------------------------------------------------------


async def test_a_foreign_web_page_cannot_post_to_an_open_router(open_fleet: RouterFleet) -> None:
    before = await served(open_fleet)
    body = orjson.dumps({"model": LLAMA, "prompt": "hi", "stream": False})
    # a "simple" cross-site request: text/plain, so the browser sends it without a preflight
    status, headers, reply = await raw_post(open_fleet.url, "/api/generate", body, {"Origin": "https://evil.example", "Content-Type": "text/plain"})
    assert status == 403 and "origin" in orjson.loads(reply)["error"]
    assert "Access-Control-Allow-Origin" not in headers
    assert await served(open_fleet) == before


async def test_a_rebound_host_name_is_refused_on_a_loopback_bind(open_fleet: RouterFleet) -> None:
    body = orjson.dumps({"model": LLAMA, "messages": MESSAGES})
    status, _, reply = await raw_post(open_fleet.url, "/v1/chat/completions", body, {"Host": "attacker.example:8080"})
    assert status == 403 and orjson.loads(reply)["error"]["code"] == "origin_not_allowed"
    for host in ("localhost:8080", "127.0.0.1", "gpu-box.local", "router.internal"):
        status, _, _ = await raw_post(open_fleet.url, "/v1/chat/completions", body, {"Host": host})
        assert status == 200, host


async def test_local_origins_are_allowed_and_told_so(open_fleet: RouterFleet) -> None:
    body = orjson.dumps({"model": LLAMA, "messages": MESSAGES})
    status, headers, _ = await raw_post(open_fleet.url, "/v1/chat/completions", body, {"Origin": "http://localhost:5173"})
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    assert "X-Request-Id" in headers["Access-Control-Expose-Headers"]


async def preflight(url: str, path: str, origin: str) -> tuple[int, dict[str, str]]:
    async with aiohttp.ClientSession() as session:
        async with session.options(url + path, headers={
            "Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type",
        }) as response:
            return response.status, dict(response.headers)


async def test_preflights_are_answered_for_allowed_origins_without_a_key(keyed: Keyed) -> None:
    status, headers = await preflight(keyed.url, "/v1/messages", "http://127.0.0.1:3000")
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:3000"
    allowed = headers["Access-Control-Allow-Headers"].lower().split(",")
    assert {"authorization", "content-type", "x-api-key", "anthropic-version"} <= set(allowed)
    status, headers = await preflight(keyed.url, "/v1/chat/completions", "https://evil.example")
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    # the real request from the allowed page then carries its key, and its answer the CORS header
    body = orjson.dumps({"model": LLAMA, "messages": MESSAGES})
    status, headers, _ = await raw_post(keyed.url, "/v1/chat/completions", body, {**keyed.auth("other"), "Origin": "http://127.0.0.1:3000"})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:3000"
    # and an error is readable by that page too
    status, headers, _ = await raw_post(keyed.url, "/v1/chat/completions", body, {"Origin": "http://127.0.0.1:3000"})
    assert status == 401 and headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:3000"


async def test_allowed_origins_extends_the_local_ones() -> None:
    async with router_fleet(CATALOG, settings={"allowed_origins": ["https://chat.example.com", "https://*.corp.example"]}) as fleet:
        body = orjson.dumps({"model": LLAMA, "messages": MESSAGES})
        for origin, expected in (("https://chat.example.com", 200), ("https://ui.corp.example", 200), ("https://chat.example.org", 403)):
            status, _, _ = await raw_post(fleet.url, "/v1/chat/completions", body, {"Origin": origin})
            assert status == expected, origin


# -- 5. one key cannot take every slot -------------------------------------------------------------

ONE_SLOT = catalog_yaml("a", models={LLAMA: "containers: [a]"}, container_extra="num_parallel: 1")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def one_slot(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Keyed]:
    file: Path = tmp_path_factory.mktemp("slots") / "keys.yaml"
    keys = {}
    for name, args in {"greedy": [], "polite": [], "capped": ["--max-concurrent", "2"]}.items():
        code, output = keys_add(file, name, *args)
        assert code == 0, output.stderr
        keys[name] = output.key
    settings = {"api_keys_file": str(file), "max_queue": 4, "queue_timeout": 30}
    async with router_fleet(ONE_SLOT, settings=settings, emulator={"tokens_per_second": 50}) as fleet:
        yield Keyed(fleet, file, keys, {})


def slow_chat(tokens: int) -> bytes:
    return orjson.dumps({"model": LLAMA, "messages": MESSAGES, "stream": False, "options": {"num_predict": tokens}})


async def test_a_waiting_key_is_served_before_a_key_that_already_holds_slots(one_slot: Keyed) -> None:
    finished: list[str] = []

    async def send(who: str, tokens: int) -> None:
        status, _, _ = await raw_post(one_slot.url, "/api/chat", slow_chat(tokens), one_slot.auth(who))
        assert status == 200
        finished.append(who)

    greedy = [asyncio.create_task(send("greedy", 10))]
    await asyncio.sleep(0.05)  # its first request holds the only slot
    greedy += [asyncio.create_task(send("greedy", 10)) for _ in range(3)]
    await eventually(lambda: one_slot.fleet.services.fleet.containers["a"].slots.queued == 3)
    polite = asyncio.create_task(send("polite", 2))
    await eventually(lambda: one_slot.fleet.services.fleet.containers["a"].slots.queued == 4)
    await asyncio.gather(polite, *greedy)
    assert finished.index("polite") == 1  # right after the request that held the slot, before greedy's queue


async def test_max_concurrent_caps_one_key_and_says_so(one_slot: Keyed) -> None:
    running = [asyncio.create_task(raw_post(one_slot.url, "/api/chat", slow_chat(20), one_slot.auth("capped"))) for _ in range(2)]
    await eventually(lambda: one_slot.fleet.services.limits.key_in_flight("capped") == 2)
    status, _, reply = await raw_post(one_slot.url, "/v1/chat/completions", orjson.dumps({"model": LLAMA, "messages": MESSAGES}), one_slot.auth("capped"))
    error = orjson.loads(reply)["error"]
    assert status == 429 and error["code"] == "rate_limit_exceeded" and "max_concurrent" in error["message"]
    assert all(r[0] == 200 for r in await asyncio.gather(*running))


async def test_a_full_fleet_has_a_code_of_its_own_in_both_apis(one_slot: Keyed) -> None:
    state = one_slot.fleet.services.fleet.containers["a"]
    busy = [asyncio.create_task(raw_post(one_slot.url, "/api/chat", slow_chat(20), one_slot.auth("greedy"))) for _ in range(5)]
    await eventually(lambda: state.in_flight == 1 and state.slots.queued == 4)
    status, headers, reply = await raw_post(one_slot.url, "/v1/chat/completions", slow_chat(1), one_slot.auth("polite"))
    assert status == 429 and int(headers["Retry-After"]) >= 1
    assert orjson.loads(reply)["error"]["code"] == "fleet_at_capacity"
    status, headers, reply = await raw_post(one_slot.url, "/api/chat", slow_chat(1), one_slot.auth("polite"))
    assert status == 429 and orjson.loads(reply) == {"error": orjson.loads(reply)["error"], "code": "fleet_at_capacity"}
    await asyncio.gather(*busy)


async def eventually(condition: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.01)


# -- 8. aiohttp's own 400s ----------------------------------------------------------------------------

MALFORMED = [
    pytest.param(b"GARBAGE-SECRET /x HTTP/1.1\r\nHost: localhost\r\n\r\n", id="request-line"),
    pytest.param(b"POST /api/chat HTTP/1.1\r\nHost: localhost\r\nX-Secret: " + b"s" * 20000 + b"\r\n\r\n", id="huge-header"),
    pytest.param(
        b"POST /api/chat HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        id="length-and-chunked",
    ),
    pytest.param(b"GET /api/tags HTTP/1.1\r\nHost: localhost\r\nBad Header SECRET\r\n\r\n", id="bad-header-line"),
]


@pytest.mark.parametrize("raw", MALFORMED)
async def test_malformed_requests_get_json_that_quotes_nothing(open_fleet: RouterFleet, raw: bytes) -> None:
    port = int(open_fleet.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    async with asyncio.timeout(10):
        answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith((b"HTTP/1.1 4", b"HTTP/1.0 4")), head
    assert b"Content-Type: application/json" in head
    assert orjson.loads(body)["error"]
    assert b"SECRET" not in answer and b"sssss" not in answer


async def test_the_router_still_answers_after_the_malformed_requests(open_fleet: RouterFleet) -> None:
    async with open_fleet.session.get(open_fleet.url + "/healthz") as response:
        assert response.status == 200
