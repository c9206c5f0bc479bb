"""Errors in each API's own shape: unknown model, bad request, upstream errors
kept as they were, unknown paths and methods. Never a traceback or an HTML page."""

from __future__ import annotations

from typing import Any

import ollama
import openai
import orjson
import pytest

from tests.harness import RouterFleet, router_fleet
from tests.server.support import CATALOG, MESSAGES, QWEN, chunks, http, ollama_client, openai_client, served_by

pytestmark = pytest.mark.asyncio(loop_scope="module")

OPENAI_JSON = "application/json"
OLLAMA_JSON = "application/json; charset=utf-8"

# Every endpoint that names a model, with a body naming `model`.
OPENAI_MODEL_POSTS = {
    "/v1/chat/completions": {"messages": MESSAGES},
    "/v1/completions": {"prompt": "hi"},
    "/v1/embeddings": {"input": "hi"},
}
OLLAMA_MODEL_POSTS = {
    "/api/chat": {"messages": MESSAGES},
    "/api/generate": {"prompt": "hi"},
    "/api/embed": {"input": "hi"},
    "/api/embeddings": {"prompt": "hi"},
    "/api/show": {},
}
MODEL_POSTS = {**OPENAI_MODEL_POSTS, **OLLAMA_MODEL_POSTS}


def openai_not_found(name: str) -> dict[str, Any]:
    return {
        "error": {
            "message": f"model '{name}' not found",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }


@pytest.mark.parametrize("path", list(MODEL_POSTS))
async def test_unknown_model_is_404_in_the_apis_shape_and_reaches_no_container(fleet: RouterFleet, path: str) -> None:
    reply, served = await served_by(fleet, lambda: http(fleet, "POST", path, json={"model": "nope:1b", **MODEL_POSTS[path]}))
    assert reply.status == 404
    if path.startswith("/v1/"):
        assert reply.headers["Content-Type"] == OPENAI_JSON
        assert reply.json() == openai_not_found("nope:1b")
    else:
        assert reply.headers["Content-Type"] == OLLAMA_JSON
        assert reply.json() == {"error": "model 'nope:1b' not found"}
    assert served == {}


async def test_unknown_model_on_models_endpoint(fleet: RouterFleet) -> None:
    reply = await http(fleet, "GET", "/v1/models/nope")
    assert reply.status == 404
    assert reply.json() == openai_not_found("nope")


async def test_unknown_model_through_the_official_clients(fleet: RouterFleet) -> None:
    client = openai_client(fleet)
    with pytest.raises(openai.NotFoundError) as openai_error:
        await client.chat.completions.create(model="nope", messages=MESSAGES)
    assert openai_error.value.body == openai_not_found("nope")["error"]
    await client.close()
    with pytest.raises(ollama.ResponseError) as ollama_error:
        await ollama_client(fleet).chat(model="nope", messages=MESSAGES)
    assert ollama_error.value.status_code == 404
    assert ollama_error.value.error == "model 'nope' not found"


BAD_BODIES: dict[str, bytes] = {
    "malformed JSON": b'{"model": "gpt-4o", ',
    "empty body": b"",
    "not an object": b'["gpt-4o"]',
    "no model": orjson.dumps({"messages": MESSAGES}),
    "empty model": orjson.dumps({"model": "", "messages": MESSAGES}),
    "model not a string": orjson.dumps({"model": 5, "messages": MESSAGES}),
}


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/embeddings", "/api/chat", "/api/generate", "/api/embed"])
@pytest.mark.parametrize("body", list(BAD_BODIES.values()), ids=list(BAD_BODIES))
async def test_bad_request_is_400_in_the_apis_shape(fleet: RouterFleet, path: str, body: bytes) -> None:
    reply, served = await served_by(fleet, lambda: http(fleet, "POST", path, data=body))
    assert reply.status == 400
    error = reply.json()["error"]
    if path.startswith("/v1/"):
        assert reply.headers["Content-Type"] == OPENAI_JSON
        assert error["type"] == "invalid_request_error" and error["message"]
        assert set(error) == {"message", "type", "param", "code"}
    else:
        assert reply.headers["Content-Type"] == OLLAMA_JSON
        assert isinstance(error, str) and error
    assert served == {}


# An error the container answers with: (fault status, API path, expected body)
UPSTREAM_ERRORS = [
    (400, "/v1/chat/completions", {"error": {"message": "boom", "type": "invalid_request_error", "param": None, "code": None}}),
    (400, "/api/chat", {"error": "boom"}),
    (500, "/v1/chat/completions", {"error": {"message": "boom", "type": "api_error", "param": None, "code": None}}),
    (500, "/api/generate", {"error": "boom"}),
    (429, "/api/chat", {"error": "boom"}),
]


@pytest.mark.parametrize(("status", "path", "expected"), UPSTREAM_ERRORS)
async def test_upstream_error_keeps_its_status_and_shape(
    fleet: RouterFleet, status: int, path: str, expected: dict[str, Any]
) -> None:
    await fleet.backends["q"].add_fault("error", status=status, message="boom")
    body = {"model": "gpt-4o", "messages": MESSAGES, "prompt": "hi", "stream": False}
    reply, served = await served_by(fleet, lambda: http(fleet, "POST", path, json=body))
    assert reply.status == status
    assert reply.json() == expected
    assert served == {"q": 1}  # the only container: nothing else to try


async def test_openai_stream_cut_upstream_raises_in_the_sdk(fleet: RouterFleet) -> None:
    """Ollama just stops an SSE stream that fails; the router adds an error event so the SDK sees it."""
    await fleet.backends["q"].add_fault("cut", after_tokens=3)
    client = openai_client(fleet)
    stream = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass
    await client.close()


async def test_ollama_stream_cut_upstream_raises_in_the_client(fleet: RouterFleet) -> None:
    await fleet.backends["q"].add_fault("cut", after_tokens=3)
    with pytest.raises(ollama.ResponseError):
        async for _ in await ollama_client(fleet).chat(model="gpt-4o", messages=MESSAGES, stream=True):
            pass


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
async def test_stream_cut_upstream_has_no_completion_marker(fleet: RouterFleet, path: str) -> None:
    await fleet.backends["q"].add_fault("cut", after_tokens=3)
    response, arrivals = await chunks(fleet, path, {"model": QWEN, "messages": MESSAGES, "stream": True})
    assert response.status == 200
    body = b"".join(a.data for a in arrivals)
    assert b"data: [DONE]" not in body and b'"done":true' not in body
    assert b'"error"' in body.strip().rsplit(b"\n", 1)[-1]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/nope"), ("POST", "/v1/chat/completion"), ("GET", "/api/nope"), ("GET", "/nope")],
)
async def test_unknown_path_is_404(fleet: RouterFleet, method: str, path: str) -> None:
    reply = await http(fleet, method, path)
    assert reply.status == 404
    if path.startswith("/v1/"):
        assert reply.json()["error"]["code"] == "unknown_url"
    else:  # as Ollama (gin) answers it
        assert reply.headers["Content-Type"].startswith("text/plain")
        assert reply.body == b"404 page not found"


@pytest.mark.parametrize(("path", "allow"), [("/api/chat", "POST"), ("/v1/chat/completions", "POST")])
async def test_wrong_method_is_405_with_allow(fleet: RouterFleet, path: str, allow: str) -> None:
    reply = await http(fleet, "GET", path)
    assert reply.status == 405
    assert reply.headers["Allow"] == allow
    if path.startswith("/v1/"):
        assert reply.json()["error"]["type"] == "invalid_request_error"
    else:
        assert reply.body == b"405 method not allowed"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat"])
async def test_body_over_the_limit_is_413_in_the_apis_shape(path: str) -> None:
    async with router_fleet(CATALOG, settings={"max_body_bytes": 1024, "keep_warm": False}) as small:
        big = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 4096}]}
        reply, served = await served_by(small, lambda: http(small, "POST", path, json=big))
    assert reply.status == 413
    error = reply.json()["error"]
    assert "too large" in (error["message"] if path.startswith("/v1/") else error)
    assert served == {}
