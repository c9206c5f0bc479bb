"""Malformed requests at every endpoint: random bytes, wrong JSON types, huge and odd headers,
wrong methods. The router never answers 5xx itself, never shows a traceback, never logs an
unhandled error, and keeps serving."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.access.support import CATALOG, LLAMA, QWEN, keys_add
from tests.harness import router_fleet, router_in_thread

ENDPOINTS = [
    "/", "/api/version", "/api/tags", "/api/ps", "/api/chat", "/api/generate", "/api/embed", "/api/embeddings",
    "/api/show", "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/v1/models/" + LLAMA,
    "/healthz", "/readyz", "/router/status", "/metrics", "/no/such/path",
]
MODEL_ENDPOINTS = [p for p in ENDPOINTS if p.startswith(("/api/", "/v1/")) and p not in ("/api/version", "/api/tags", "/api/ps")]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]


@dataclass
class Target:
    host: str
    port: int
    keys: dict[str, str]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A router with keys in its own thread and loop, so that hypothesis drives it synchronously."""
    file: Path = tmp_path_factory.mktemp("fuzz") / "keys.yaml"
    keys = {name: keys_add(file, name, *args)[1].key for name, args in {"admin": ["--admin"], "user": []}.items()}
    settings = {"api_keys_file": str(file), "max_body_bytes": 8192, "body_timeout": 2.0, "header_timeout": 5.0}

    @contextlib.asynccontextmanager
    async def keyed_router() -> AsyncIterator[str]:
        async with router_fleet(CATALOG, settings=settings) as fleet:
            yield fleet.url

    with router_in_thread(keyed_router, "fuzz-router") as port:
        yield Target("127.0.0.1", port, keys)


def exchange(target: Target, request: bytes) -> bytes:
    """Send raw bytes; everything the router answers until it closes the connection."""
    with socket.create_connection((target.host, target.port), timeout=10) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass
        received = []
        try:
            while data := sock.recv(65536):
                received.append(data)
        except ConnectionResetError:
            pass
    return b"".join(received)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
payloads = st.fixed_dictionaries(
    {"model": st.sampled_from([LLAMA, QWEN, "gpt-4o-mini", "nope"]) | json_values},
    optional={
        name: json_values
        for name in ("messages", "prompt", "input", "stream", "options", "format", "keep_alive", "name", "max_tokens", "tools")
    },
)
# Go reads JSON keys case-insensitively: every spelling of "model" (and "name") but the exact one
case_variants = st.sampled_from(["model", "name"]).flatmap(
    lambda field: st.lists(st.booleans(), min_size=len(field), max_size=len(field)).map(
        lambda upper: "".join(c.upper() if u else c for c, u in zip(field, upper, strict=True))
    ).filter(lambda variant: variant not in ("model", "name"))
)
model_names = st.sampled_from([LLAMA, QWEN, "gpt-4o-mini", "nope"]) | st.text(min_size=500, max_size=3000)  # long ones too


@st.composite
def two_names(draw: st.DrawFn) -> tuple[bytes, str, bool]:
    """A body that names its model twice (a case variant of the field, or the field repeated),
    the second field's spelling, and whether the two names are the same."""
    first, second = draw(model_names), draw(model_names)
    field = draw(case_variants) if draw(st.booleans()) else "model"
    pairs = [("model", first), (field, second)]
    if draw(st.booleans()):
        pairs.reverse()
    text = "{" + ",".join(f"{orjson.dumps(k).decode()}:{orjson.dumps(v).decode()}" for k, v in pairs) + ',"messages":[],"prompt":"x"}'
    return text.encode(), field, first == second


smuggled = two_names().map(lambda pair: pair[0])


bodies = st.booleans().flatmap(
    lambda payload: payloads.map(orjson.dumps) if payload else st.one_of(
        st.none(),
        st.binary(max_size=600),
        json_values.map(orjson.dumps),
        st.just(b"x" * 10000),  # over max_body_bytes
        smuggled,
    )
)


def rarely(common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`rare` one time in ten: most requests should get past the HTTP parser."""
    return st.integers(0, 9).flatmap(lambda n: rare if n == 0 else common)


odd_header_names = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"), min_size=1, max_size=40)
header_names = rarely(st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,30}", fullmatch=True), odd_header_names)
odd_header_values = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=300) | st.just("v" * 20000)
header_values = rarely(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=100), odd_header_values)
# mostly a valid key, so that most requests reach the handlers
auths = st.sampled_from(["user"] * 6 + ["admin", "x-api-key", "none", "garbage", "odd"])


@st.composite
def requests(draw: st.DrawFn, keys: dict[str, str]) -> bytes:
    if draw(st.integers(0, 19)) == 0:
        return draw(st.binary(min_size=1, max_size=300))  # not HTTP at all
    method = draw(rarely(st.sampled_from(["POST"] * 4 + METHODS), st.text(st.characters(min_codepoint=65, max_codepoint=90), min_size=1, max_size=10)))
    path = draw(st.sampled_from(ENDPOINTS + MODEL_ENDPOINTS))
    if draw(st.integers(0, 3)) == 0:
        path += draw(st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=30)).replace("#", "%23")
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    auth = draw(auths)
    if auth in ("user", "admin"):
        lines.append(f"Authorization: Bearer {keys[auth]}")
    elif auth == "x-api-key":
        lines.append(f"x-api-key: {keys['user']}")
    elif auth == "garbage":
        lines.append("Authorization: Bearer " + draw(st.text(st.characters(min_codepoint=33, max_codepoint=255), max_size=80)))
    elif auth == "odd":
        lines.append("Authorization: " + draw(odd_header_values))
    for name, value in draw(st.lists(st.tuples(header_names, header_values), max_size=3)):
        lines.append(f"{name}: {value}")
    body = draw(bodies)
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + (body or b"")


def check(answer: bytes) -> None:
    assert b"Traceback" not in answer and b'File "' not in answer, answer[:2000]
    if not answer:
        return  # the router may close on garbage without a word
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), answer[:200]
    status = int(status_line.split()[1])
    head = rest.partition(b"\r\n\r\n")[0].lower()
    from_container = b"\r\nx-router-container:" in b"\r\n" + head
    assert status < 500 or from_container, answer[:2000]


def test_malformed_requests_never_get_a_5xx_or_a_traceback(target: Target, caplog: pytest.LogCaptureFixture) -> None:
    with structlog.testing.capture_logs() as logs:
        run_fuzz(target)
        assert exchange(target, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 200")
        ready = exchange(target, b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert ready.startswith(b"HTTP/1.1 200"), ready  # no container was talked into looking down
    unhandled = [entry for entry in logs if entry["event"] == "unhandled_error" or entry.get("log_level") == "error"]
    assert not unhandled, unhandled[:3]
    tracebacks = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not tracebacks, [r.getMessage() for r in tracebacks[:3]]
    assert all(key not in caplog.text for key in target.keys.values())


def test_a_body_naming_two_models_is_never_forwarded(target: Target) -> None:
    examples = int(os.environ.get("FUZZ_EXAMPLES", "400")) // 2

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(path=st.sampled_from([p for p in MODEL_ENDPOINTS if not p.startswith("/v1/models")]), case=two_names())
    def fuzz(path: str, case: tuple[bytes, str, bool]) -> None:
        body, field, same = case
        # Ollama could read another model than the router: a variant of "model" anywhere; of
        # "name" where the request has a name field (/api/show); "model" twice with two names
        ambiguous = (field.lower() == "model" and field != "model") or (field.lower() == "name" and path == "/api/show") or (field == "model" and not same)
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer {target.keys['user']}\r\nContent-Length: {len(body)}\r\n\r\n"
        answer = exchange(target, head.encode() + body)
        if ambiguous:
            assert answer.split(b" ", 2)[1] in (b"400", b"413"), answer[:500]
            assert b"x-router-container" not in answer.lower()

    fuzz()


def run_fuzz(target: Target) -> None:
    @settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "400")), deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(request=requests(target.keys))
    def fuzz(request: bytes) -> None:
        check(exchange(target, request))

    fuzz()
