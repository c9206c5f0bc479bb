"""OpenAI's Responses API through the router with the real `openai` SDK, and
its bytes compared with the container's own answer to the same request."""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest

from tests.apis.support import LLAMA, QWEN, SONNET, Apis, normalised, sse_events
from tests.harness import curl

pytestmark = pytest.mark.asyncio(loop_scope="module")

ALIAS = "gpt-4.1-mini"  # llama's
FUNCTION = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


async def test_create_reaches_a_container_of_the_aliased_model(apis: Apis) -> None:
    raw = await apis.openai().responses.with_raw_response.create(model=ALIAS, input="Say hello", instructions="Be brief.")
    response = raw.parse()
    assert response.status == "completed" and response.model == LLAMA
    assert response.output_text.strip()
    assert response.usage is not None and response.usage.output_tokens > 0
    assert response.instructions == "Be brief."
    assert raw.headers["X-Router-Model"] == LLAMA and raw.headers["X-Router-Container"] in {"a", "b"}


async def test_stream_events_and_final_response(apis: Apis) -> None:
    async with apis.openai().responses.stream(model=SONNET, input="Say hello") as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    types = [event.type for event in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert len(deltas) > 3 and "".join(deltas) == final.output_text
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert final.model == QWEN and final.usage is not None and final.usage.output_tokens == len(deltas)


async def test_function_call(apis: Apis) -> None:
    response = await apis.openai().responses.create(model=ALIAS, input="Weather in Paris?", tools=[FUNCTION])  # type: ignore[list-item]
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert "city" in orjson.loads(calls[0].arguments)


async def test_router_errors_are_openai_shaped(apis: Apis) -> None:
    with pytest.raises(openai.AuthenticationError) as unauthenticated:
        await apis.openai("not-a-key").responses.create(model=ALIAS, input="hi")
    assert unauthenticated.value.code == "invalid_api_key"
    with pytest.raises(openai.NotFoundError) as not_found:
        await apis.openai("team").responses.create(model=SONNET, input="hi")  # outside its allowlist
    assert not_found.value.code == "model_not_found"
    assert not_found.value.body["type"] == "invalid_request_error"  # type: ignore[index]


@pytest.mark.parametrize("stream", [False, True])
async def test_the_bytes_are_the_containers_own(apis: Apis, stream: bool) -> None:
    """The router changes nothing of an answer but what differs per request anyway (ids, clocks)."""
    ask = {"model": LLAMA, "input": [{"role": "user", "content": "Tell me about the sea"}], "stream": stream,
           "instructions": "Mind the sea & <waves>"}
    body = orjson.dumps(ask).decode()
    status, headers, through = await curl("-N", apis.url + "/v1/responses", "-H", f"Authorization: Bearer {apis.keys['dev']}",
                                          "-H", "Content-Type: application/json", "-d", body)
    container = apis.fleet.backends[headers["x-router-container"]]
    direct_status, direct_headers, direct = await curl("-N", container.url + "/v1/responses", "-H", "Content-Type: application/json", "-d", body)
    assert status == direct_status == 200
    assert headers["content-type"] == direct_headers["content-type"]
    assert normalised(through) == normalised(direct)
    assert b"\\u0026 \\u003cwaves\\u003e" in through  # Go's escaping, untouched


async def test_raw_sse_framing_and_order(apis: Apis) -> None:
    body = orjson.dumps({"model": ALIAS, "input": "Say hello", "stream": True}).decode()
    status, headers, answer = await curl("-N", apis.url + "/v1/responses", "-H", f"Authorization: Bearer {apis.keys['dev']}",
                                         "-H", "Content-Type: application/json", "-d", body)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = sse_events(answer)
    names = [name for name, _ in events]
    assert names[:4] == ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
    assert set(names[4:-4]) == {"response.output_text.delta"}
    assert names[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"]
    data = [orjson.loads(raw) for _, raw in events]
    assert [d["type"] for d in data] == names
    assert [d["sequence_number"] for d in data] == list(range(len(events)))
    assert b"[DONE]" not in answer


async def test_a_stream_cut_midway_ends_with_response_failed(apis: Apis) -> None:
    for name in ("a", "b"):
        await apis.fleet.backends[name].add_fault("cut", count=-1, after_tokens=3, path="/v1/responses")
    try:
        async with apis.openai().responses.stream(model=ALIAS, input="Say hello") as stream:
            events = [event async for event in stream]
            with pytest.raises(RuntimeError, match=r"response\.completed"):
                await stream.get_final_response()
        failed = events[-1]
        assert failed.type == "response.failed"
        assert failed.response.id == events[0].response.id  # type: ignore[union-attr]
        assert failed.sequence_number == events[-2].sequence_number + 1
        assert failed.response.error is not None and failed.response.error.code == "server_error"
        assert "response.completed" in failed.response.error.message
        assert [e.type for e in events].count("response.output_text.delta") == 3
        # the plain streaming call shows the same last event
        raw: list[Any] = [event async for event in await apis.openai().responses.create(model=ALIAS, input="Say hello", stream=True)]
        assert raw[-1].type == "response.failed" and raw[-1].response.status == "failed"
    finally:
        for name in ("a", "b"):
            await apis.fleet.backends[name].clear_faults()


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/images/generations"), ("POST", "/v1/images/edits"), ("GET", "/v1/images/variations")])
async def test_the_image_routes_ollama_removed_are_404_saying_so(apis: Apis, method: str, path: str) -> None:
    before = await apis.requests_seen()
    async with apis.fleet.session.request(method, apis.url + path, json={"model": ALIAS, "prompt": "a cat"}, headers=apis.auth()) as response:
        assert response.status == 404
        error = (await response.json())["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "unknown_url"
    assert error["message"] == f"{path} was removed from Ollama in 0.32.6: no container serves image generation"
    assert await apis.requests_seen() == before
