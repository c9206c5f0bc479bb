"""Responses and Messages routed like chat completions: a dead sibling is
passed over before the first byte, a failing model gives way to its fallback,
a full fleet says so, and token counts for metrics come from each API's own
usage."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import openai
import pytest

from router.fleet.state import Phase
from tests.apis.support import HAIKU, LLAMA, MESSAGES, QWEN, Apis
from tests.harness import catalog_yaml, router_fleet
from tests.server.support import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_metrics_count_tokens_from_each_apis_usage(apis: Apis) -> None:
    """The meter key's prompt and completion counters grow by exactly what the clients were told."""
    prompt_before = await apis.metric("ollama_router_prompt_tokens_total", key="meter")
    completion_before = await apis.metric("ollama_router_completion_tokens_total", key="meter")
    claude, gpt = apis.anthropic("meter"), apis.openai("meter")
    usages: list[tuple[int, int]] = []
    message = await claude.messages.create(model=HAIKU, max_tokens=64, messages=MESSAGES)
    usages.append((message.usage.input_tokens, message.usage.output_tokens))
    async with claude.messages.stream(model=HAIKU, max_tokens=64, messages=MESSAGES) as stream:
        final = await stream.get_final_message()  # real counts in message_delta, after message_start's estimate
    usages.append((final.usage.input_tokens, final.usage.output_tokens))
    response = await gpt.responses.create(model=HAIKU, input="Say hello")
    async with gpt.responses.stream(model=HAIKU, input="Say hello") as events:
        streamed = await events.get_final_response()
    for usage in (response.usage, streamed.usage):
        assert usage is not None
        usages.append((usage.input_tokens, usage.output_tokens))
    assert await apis.metric("ollama_router_prompt_tokens_total", key="meter") - prompt_before == sum(u[0] for u in usages)
    assert await apis.metric("ollama_router_completion_tokens_total", key="meter") - completion_before == sum(u[1] for u in usages)


async def test_a_failing_model_gives_way_to_its_fallback(apis: Apis) -> None:
    for name in ("a", "b"):
        await apis.fleet.backends[name].add_fault("busy", count=-1)
    try:
        raw = await apis.anthropic().messages.with_raw_response.create(model=HAIKU, max_tokens=32, messages=MESSAGES)
        message = await raw.parse()
        assert message.model == QWEN and message.content
        assert raw.headers["X-Router-Fallback"].startswith(f"{LLAMA} -> {QWEN}")
        response = await apis.openai().responses.with_raw_response.create(model=HAIKU, input="Say hello")
        assert response.parse().model == QWEN and response.headers["X-Router-Container"] == "q"
    finally:
        for name in ("a", "b"):
            await apis.fleet.backends[name].clear_faults()


async def test_a_sibling_killed_before_the_first_byte_is_passed_over(apis: Apis) -> None:
    """Container a is the first choice for llama; SIGKILLed, its requests go to b, not to the client."""
    fleet = apis.fleet
    fleet.backends["a"].kill()
    try:
        raw = await apis.anthropic().messages.with_raw_response.create(model=HAIKU, max_tokens=32, messages=MESSAGES)
        assert (await raw.parse()).content and raw.headers["X-Router-Container"] == "b"
        a = fleet.services.fleet.containers["a"]
        assert a.phase is Phase.DOWN and a.failures == 1  # tried, refused, reported
        async with apis.openai().responses.stream(model=HAIKU, input="Say hello") as stream:
            assert (await stream.get_final_response()).output_text
        assert "X-Router-Fallback" not in raw.headers
    finally:
        await fleet.backends["a"].restart()

    async def a_is_back() -> bool:
        return fleet.services.fleet.containers["a"].phase is Phase.UP

    assert await eventually(a_is_back, timeout=15)


FULL = catalog_yaml("x", models={"llama3.2:3b": "containers: [x], aliases: [claude-3-5-haiku-latest]"},
                    container_extra="num_parallel: 1")


async def test_a_full_fleet_answers_429_fleet_at_capacity_in_each_shape() -> None:
    async with router_fleet(FULL, emulator={"tokens_per_second": 20, "response_tokens": 400}, settings={"max_queue": 0}) as fleet:
        claude = anthropic.AsyncAnthropic(base_url=fleet.url, api_key="unused", max_retries=0)
        gpt = openai.AsyncOpenAI(base_url=fleet.url + "/v1", api_key="unused", max_retries=0)
        busy = asyncio.Event()

        async def hold_the_slot() -> None:
            async with claude.messages.stream(model=HAIKU, max_tokens=400, messages=MESSAGES) as stream:
                async for _ in stream.text_stream:
                    busy.set()

        holder = asyncio.create_task(hold_the_slot())
        try:
            await asyncio.wait_for(busy.wait(), 10)
            with pytest.raises(anthropic.RateLimitError) as claude_refused:
                await claude.messages.create(model=HAIKU, max_tokens=8, messages=MESSAGES)
            with pytest.raises(openai.RateLimitError) as gpt_refused:
                await gpt.responses.create(model=HAIKU, input="hi")
        finally:
            holder.cancel()
            await asyncio.gather(holder, return_exceptions=True)
        body: Any = claude_refused.value.body
        assert body["error"]["type"] == "rate_limit_error" and "capacity" in body["error"]["message"]
        assert claude_refused.value.response.headers["Retry-After"] == "1"
        assert gpt_refused.value.code == "fleet_at_capacity"
