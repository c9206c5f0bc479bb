"""What every response carries and what never crosses the router: `X-Request-Id`
on every kind of response, hop-by-hop headers dropped both ways, a local `Host`
upstream."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web
from multidict import CIMultiDictProxy

from router.server.runner import start_app
from tests.harness import RouterFleet
from tests.server.support import MESSAGES, Reply, http, router_before

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str
    json: Any = None
    data: bytes | None = None
    fault: str | None = None  # armed on container q first


CALLS = {
    "answer": Call("POST", "/v1/chat/completions", {"model": "gpt-4o", "messages": MESSAGES}),
    "sse stream": Call("POST", "/v1/chat/completions", {"model": "gpt-4o", "messages": MESSAGES, "stream": True}),
    "ndjson stream": Call("POST", "/api/generate", {"model": "gpt-4o", "prompt": "hi"}),
    "unknown model": Call("POST", "/api/chat", {"model": "nope", "messages": MESSAGES}),
    "malformed json": Call("POST", "/v1/chat/completions", data=b"{"),
    "unknown path": Call("GET", "/api/nope"),
    "upstream error": Call("POST", "/api/chat", {"model": "gpt-4o", "messages": MESSAGES}, fault="error"),
    "listing": Call("GET", "/api/tags"),
    "health": Call("GET", "/healthz"),
}


async def send(fleet: RouterFleet, call: Call, headers: dict[str, str] | None = None) -> Reply:
    if call.fault:
        await fleet.backends["q"].add_fault(call.fault)
    return await http(fleet, call.method, call.path, json=call.json, data=call.data, headers=headers)


@pytest.mark.parametrize("call", list(CALLS.values()), ids=list(CALLS))
async def test_request_id_is_the_clients_own(fleet: RouterFleet, call: Call) -> None:
    reply = await send(fleet, call, {"X-Request-Id": "client-chose-this-1"})
    assert reply.headers.getall("X-Request-Id") == ["client-chose-this-1"]


@pytest.mark.parametrize("call", list(CALLS.values()), ids=list(CALLS))
async def test_request_id_is_generated_when_absent(fleet: RouterFleet, call: Call) -> None:
    first = (await send(fleet, call)).headers.getall("X-Request-Id")
    second = (await send(fleet, call)).headers.getall("X-Request-Id")
    assert len(first) == len(second) == 1
    assert first[0] and second[0] and first != second


async def test_unusable_request_id_is_replaced(fleet: RouterFleet) -> None:
    reply = await send(fleet, CALLS["answer"], {"X-Request-Id": "x" * 500})
    assert reply.headers["X-Request-Id"] and reply.headers["X-Request-Id"] != "x" * 500


# --- hop-by-hop headers, against a stand-in Ollama that shows what it received ----------

HOP_BY_HOP_TO_CLIENT = {
    "Keep-Alive": "timeout=5",
    "Proxy-Authenticate": "Basic realm=upstream",
    "Proxy-Connection": "keep-alive",
    "Trailer": "X-Checksum",
}
HOP_BY_HOP_FROM_CLIENT = {
    "Keep-Alive": "300",
    "Proxy-Authorization": "Basic c2VjcmV0",
    "Proxy-Connection": "keep-alive",
    "TE": "trailers",
}


def fixed(body: bytes) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def answer(_: web.Request) -> web.Response:
        return web.Response(body=body)

    return answer


@dataclass
class StandIn:
    """Enough of Ollama for the router's probes, and a /api/chat that records its headers."""

    received: list[CIMultiDictProxy[str]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        listing = b'{"models":[]}'
        for path, body in (("/", b"Ollama is running"), ("/api/version", b'{"version":"0.33.0"}'), ("/api/ps", listing), ("/api/tags", listing)):
            app.router.add_get(path, fixed(body))
        app.router.add_post("/api/chat", self.chat)
        return app

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.received.append(request.headers)
        await request.read()
        response = web.StreamResponse(headers={**HOP_BY_HOP_TO_CLIENT, "X-Upstream": "kept"})
        response.content_type = "application/x-ndjson"
        await response.prepare(request)
        await response.write(b'{"model":"m","message":{"role":"assistant","content":"hi"},"done":false}\n')
        await response.write(b'{"model":"m","message":{"role":"assistant","content":""},"done":true}\n')
        return response


async def test_hop_by_hop_headers_are_dropped_both_ways_and_upstream_host_is_local(fleet: RouterFleet) -> None:
    stand_in = StandIn()
    upstream = await start_app(stand_in.app(), "127.0.0.1", 0)
    try:
        async with router_before(upstream.url) as url:
            headers = {**HOP_BY_HOP_FROM_CLIENT, "Host": "router.localhost", "X-Request-Id": "hop-1"}
            body = orjson.dumps({"model": "m:1b", "messages": MESSAGES})
            async with fleet.session.post(url + "/api/chat", data=body, headers=headers) as response:
                assert response.status == 200
                answer = await response.read()
                returned = response.headers
    finally:
        await upstream.close()
    assert answer.endswith(b'"done":true}\n')
    assert returned["X-Upstream"] == "kept"
    assert not set(HOP_BY_HOP_TO_CLIENT) & set(returned)
    [seen] = stand_in.received
    assert not set(HOP_BY_HOP_FROM_CLIENT) & set(seen)
    assert seen["Host"] == upstream.url.removeprefix("http://")  # local, never the client's
    assert seen["X-Request-Id"] == "hop-1"
