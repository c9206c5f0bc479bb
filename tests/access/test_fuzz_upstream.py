"""The fuzz from the other side: a container that sends informational answers (100, 102,
103, with odd headers) before its answer, answers framed every way, and sometimes an
answer nobody asked for after it. Whatever it draws, each client gets its own answer,
whole, and never another's (the router's upstream client, router/upstream/http1.py)."""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness import router_in_thread
from tests.server.raw_upstream import Exchange, RawUpstream, answer, chunked, ollama_like
from tests.server.support import router_before


@dataclass(frozen=True)
class Plan:
    """What the container sends for one request."""

    informational: tuple[bytes, ...]  # whole 1xx heads, in order
    framing: str  # length, chunked or close
    unsolicited: bool  # a second answer after the real one


header_name = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True)
header_value = st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=60)


@st.composite
def informational_heads(draw: st.DrawFn) -> bytes:
    status = draw(st.sampled_from(["100 Continue", "102 Processing", "103 Early Hints"]))
    headers = draw(st.lists(st.tuples(header_name, header_value), max_size=4))
    lines = [f"HTTP/1.1 {status}", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


plans = st.builds(
    Plan,
    informational=st.lists(informational_heads(), max_size=4).map(tuple),
    framing=st.sampled_from(["length", "chunked", "close"]),
    unsolicited=st.booleans(),
)


def own_answer(request_id: str) -> bytes:
    return b'{"model":"m:1b","message":{"role":"assistant","content":"%s"},"done":true}\n' % request_id.encode()


@dataclass
class Target:
    port: int
    plans: dict[str, Plan]


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    """A misbehaving container and the router before it, in a thread of their own, so that
    hypothesis drives them synchronously."""
    plans: dict[str, Plan] = {}

    async def generate(exchange: Exchange) -> None:
        plan = plans[exchange.request_id]
        await exchange.body()
        body = own_answer(exchange.request_id)
        for head in plan.informational:
            exchange.write(head)
        if plan.framing == "length":
            exchange.write(answer(body, headers=[("Content-Type", "application/x-ndjson")]))
        elif plan.framing == "chunked":
            exchange.write(chunked(body[:10], body[10:]))
        else:  # delimited by the connection's end
            exchange.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n" + body)
            await exchange.drain()
            exchange.close()
            return
        if plan.unsolicited:
            exchange.write(answer(own_answer("nobody-asked")))

    @contextlib.asynccontextmanager
    async def misbehaving() -> AsyncIterator[str]:
        async with RawUpstream(ollama_like(generate, version="0.32.15")) as upstream, router_before(upstream.url) as url:
            yield url

    with router_in_thread(misbehaving, "fuzz-upstream") as port:
        yield Target(port, plans)


def ask(target: Target, request_id: str) -> bytes:
    body = b'{"model":"m:1b","messages":[{"role":"user","content":"hi"}],"stream":false}'
    head = (
        f"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Request-Id: {request_id}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", target.port), timeout=20) as sock:
        sock.sendall(head + body)
        received = []
        while data := sock.recv(65536):
            received.append(data)
    return b"".join(received)


def test_whatever_the_container_sends_first_or_after_each_client_gets_its_own_answer(target: Target) -> None:
    numbers = itertools.count()

    @settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "400")) // 2, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(plan=plans)
    def fuzz(plan: Plan) -> None:
        request_id = f"fuzz-{next(numbers)}"
        target.plans[request_id] = plan
        reply = ask(target, request_id)
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), reply[:500]
        assert b"Early Hints" not in head and b"Processing" not in head
        if b"transfer-encoding: chunked" in head.lower():
            body = b"".join(part for i, part in enumerate(body.split(b"\r\n")) if i % 2)  # the chunks' data lines
        assert body == own_answer(request_id), reply[:500]
        assert b"nobody-asked" not in reply

    fuzz()
