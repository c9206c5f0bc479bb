"""Anthropic's Messages API through the router with the real `anthropic` SDK
(as Claude Code uses it: the key in x-api-key, anthropic-version sent),
against emulated containers."""

from __future__ import annotations

from typing import Any

import aiohttp
import anthropic
import orjson
import pytest

from tests.apis.support import HAIKU, LLAMA, MESSAGES, QWEN, SONNET, WEATHER_TOOL, Apis, sse_events
from tests.server.raw_upstream import Exchange, RawUpstream, answer, ollama_like
from tests.server.support import router_before

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_create_reaches_a_container_of_the_aliased_model(apis: Apis) -> None:
    client = apis.anthropic()
    raw = await client.messages.with_raw_response.create(model=HAIKU, max_tokens=64, messages=MESSAGES)
    message = await raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.model == LLAMA  # the container was sent the catalog's tag, not the alias
    assert message.content[0].type == "text" and message.content[0].text.strip()
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert raw.headers["X-Router-Model"] == LLAMA
    assert raw.headers["X-Router-Container"] in {"a", "b"}


async def test_stream_arrives_as_text_deltas_and_a_final_message(apis: Apis) -> None:
    client = apis.anthropic()
    async with client.messages.stream(model=SONNET, max_tokens=64, messages=MESSAGES) as stream:
        pieces = [text async for text in stream.text_stream]
        message = await stream.get_final_message()
    assert len(pieces) > 3
    assert "".join(pieces) == message.content[0].text  # type: ignore[union-attr]
    assert message.model == QWEN and message.stop_reason == "end_turn"
    assert message.usage.output_tokens == len(pieces)


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_use_round_trip(apis: Apis, stream: bool) -> None:
    client = apis.anthropic()
    ask: dict[str, Any] = {"model": HAIKU, "max_tokens": 128, "tools": [WEATHER_TOOL],
                           "messages": [{"role": "user", "content": "Weather in Paris?"}]}
    if stream:
        async with client.messages.stream(**ask) as events:
            first = await events.get_final_message()
    else:
        first = await client.messages.create(**ask)
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "get_weather" and isinstance(call.input, dict) and "city" in call.input
    answer = await client.messages.create(
        model=HAIKU, max_tokens=128, tools=[WEATHER_TOOL],  # type: ignore[list-item]
        messages=[
            *ask["messages"],
            {"role": "assistant", "content": [block.model_dump() for block in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21 C"}]},
        ],
    )
    assert answer.stop_reason == "end_turn"
    assert answer.content[0].type == "text" and answer.content[0].text


COUNTED: dict[str, Any] = {
    "system": [{"type": "text", "text": "You answer in one line <always>."}],
    "tools": [WEATHER_TOOL],
    "messages": [
        {"role": "user", "content": "What is the weather in Paris & Rome?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
    ],
}


async def test_count_tokens_is_the_estimate_ollama_reports(apis: Apis) -> None:
    """count_tokens equals the input estimate Ollama puts in message_start for the same request."""
    counted = await apis.anthropic().messages.count_tokens(model=HAIKU, **COUNTED)
    body = orjson.dumps({"model": HAIKU, "max_tokens": 16, "stream": True, **COUNTED})
    async with apis.fleet.session.post(apis.url + "/v1/messages", data=body, headers=apis.auth()) as response:
        events = sse_events(await response.read())
    assert events[0][0] == "message_start"
    assert counted.input_tokens == orjson.loads(events[0][1])["message"]["usage"]["input_tokens"]
    assert counted.input_tokens > 20


async def test_count_tokens_checks_the_model_like_messages_does(apis: Apis) -> None:
    team = apis.anthropic("team")  # may use llama (as HAIKU) only
    assert (await team.messages.count_tokens(model=LLAMA, messages=MESSAGES)).input_tokens >= 1
    for model in (SONNET, "no-such-model"):
        with pytest.raises(anthropic.NotFoundError) as caught:
            await team.messages.count_tokens(model=model, messages=MESSAGES)
        assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as bad:
        await team.messages.count_tokens(model=HAIKU, messages=[])
    assert bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "messages" in bad.value.message


async def test_router_errors_are_anthropic_shaped_with_a_request_id(apis: Apis) -> None:
    with pytest.raises(anthropic.AuthenticationError) as unauthenticated:
        await apis.anthropic("sk-ant-not-a-key").messages.create(model=HAIKU, max_tokens=8, messages=MESSAGES)
    with pytest.raises(anthropic.NotFoundError) as not_found:
        await apis.anthropic("team").messages.create(model=SONNET, max_tokens=8, messages=MESSAGES)
    for caught, kind in ((unauthenticated, "authentication_error"), (not_found, "not_found_error")):
        body = caught.value.body
        assert isinstance(body, dict) and body["type"] == "error"
        assert body["error"]["type"] == kind
        assert body["request_id"].startswith("req_")
        assert caught.value.request_id == body["request_id"]  # the SDK reads it from the request-id header
    async with apis.fleet.session.post(apis.url + "/v1/messages", data=b"{", headers=apis.auth()) as response:
        assert response.status == 400
        assert (await response.json())["error"]["type"] == "invalid_request_error"


async def test_the_containers_own_validation_passes_through(apis: Apis) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await apis.anthropic().messages.create(model=HAIKU, max_tokens=0, messages=MESSAGES)
    assert caught.value.body["error"] == {  # type: ignore[index]
        "type": "invalid_request_error", "message": "max_tokens is required and must be positive"
    }


async def test_the_clients_credentials_and_anthropic_headers_stay_with_the_router() -> None:
    seen: list[dict[str, str]] = []

    async def messages(exchange: Exchange) -> None:
        seen.append(exchange.headers)
        await exchange.body()
        reply = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m:1b",
                 "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
                 "usage": {"input_tokens": 1, "output_tokens": 1}}
        exchange.write(answer(orjson.dumps(reply)))

    async with RawUpstream(ollama_like(messages, version="0.32.15")) as upstream, router_before(upstream.url) as url:
        client = anthropic.AsyncAnthropic(base_url=url, api_key="sk-ant-secret", max_retries=0,
                                          default_headers={"anthropic-beta": "tools-2024-04-04"})
        reply = await client.messages.create(model="m:1b", max_tokens=8, messages=MESSAGES)
        assert reply.content[0].text == "hi"  # type: ignore[union-attr]
    assert len(seen) == 1
    assert set(seen[0]) == {"host", "accept", "content-type", "x-request-id", "content-length"}


async def test_a_stream_cut_midway_ends_with_an_error_event(apis: Apis) -> None:
    for name in ("a", "b"):
        await apis.fleet.backends[name].add_fault("cut", count=-1, after_tokens=3, path="/v1/messages")
    try:
        with pytest.raises(anthropic.APIStatusError) as caught:
            async with apis.anthropic().messages.stream(model=HAIKU, max_tokens=64, messages=MESSAGES) as stream:
                async for _ in stream.text_stream:
                    pass
        assert caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]
        assert "message_stop" in caught.value.body["error"]["message"]  # type: ignore[index]
        # the bytes: the container's events as they came, then the router's error event
        body = orjson.dumps({"model": HAIKU, "max_tokens": 64, "stream": True, "messages": MESSAGES})
        async with aiohttp.ClientSession() as session, session.post(apis.url + "/v1/messages", data=body, headers=apis.auth()) as response:
            events = sse_events(await response.read())
        names = [name for name, _ in events]
        assert names[:3] == ["message_start", "content_block_start", "content_block_delta"]
        assert names[-1] == "error" and "message_stop" not in names and "message_delta" not in names
        assert orjson.loads(events[-1][1])["request_id"] == "req_" + response.headers["X-Request-Id"]
    finally:
        for name in ("a", "b"):
            await apis.fleet.backends[name].clear_faults()
