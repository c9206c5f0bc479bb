"""The fault kinds on /v1/responses and /v1/messages, and what /_emulator/stats counts
(docs/ollama-wire-2026.md §3.6, §4.7)."""

from __future__ import annotations

import asyncio

import aiohttp
import anthropic
import pytest

from router.emulator.faults import DEFAULT_MESSAGES
from tests.emulator.conftest import named_events, raw, wait_until

RESPONSES = {"model": "llama3.2", "input": "Say hi", "stream": True}
MESSAGES = {"model": "llama3.2", "max_tokens": 50, "messages": [{"role": "user", "content": "Hello"}], "stream": True}


def test_cut_responses_stream_just_ends(emu):
    emu.add_fault("cut", after_tokens=3, path="/v1/responses")
    reply = raw(emu.url, "POST", "/v1/responses", RESPONSES)
    names = [name for name, _, _ in named_events(reply.body)]
    assert reply.status == 200 and names[-1] == "response.output_text.delta"
    assert names.count("response.output_text.delta") == 3
    assert "response.completed" not in names and "response.failed" not in names


def test_cut_messages_stream_just_ends(emu):
    emu.add_fault("cut", after_tokens=2, path="/v1/messages")
    reply = raw(emu.url, "POST", "/v1/messages", MESSAGES)
    names = [name for name, _, _ in named_events(reply.body)]
    assert names == ["message_start", "content_block_start", "content_block_delta", "content_block_delta"]


def test_cut_without_streaming_is_a_500(emu):
    emu.add_fault("cut", count=2, after_tokens=2)
    responses = raw(emu.url, "POST", "/v1/responses", {**RESPONSES, "stream": False})
    assert responses.status == 500 and responses.json()["error"] == {
        "message": DEFAULT_MESSAGES["cut"], "type": "api_error", "param": None, "code": None,
    }
    messages = raw(emu.url, "POST", "/v1/messages", {**MESSAGES, "stream": False})
    assert messages.status == 500 and messages.json()["error"] == {"type": "api_error", "message": DEFAULT_MESSAGES["cut"]}


def test_cut_before_the_first_token_is_an_error_response(emu):
    emu.add_fault("cut", after_tokens=0)
    reply = raw(emu.url, "POST", "/v1/messages", MESSAGES)
    assert reply.status == 500 and reply.content_type == "application/json"
    assert reply.headers["Cache-Control"] == "no-cache"


def test_error_busy_and_load_fail(emu):
    emu.add_fault("error", status=502, message="upstream gone", path="/v1/responses")
    reply = raw(emu.url, "POST", "/v1/responses", RESPONSES)
    assert reply.status == 502 and reply.json()["error"]["type"] == "api_error"
    emu.add_fault("busy", path="/v1/responses")
    assert raw(emu.url, "POST", "/v1/responses", RESPONSES).status == 503
    emu.add_fault("load_fail")
    with pytest.raises(anthropic.InternalServerError) as failed:
        anthropic.Anthropic(base_url=emu.url, api_key="x", max_retries=0).messages.create(**{**MESSAGES, "stream": False})
    assert failed.value.body["error"] == {"type": "api_error", "message": DEFAULT_MESSAGES["load_fail"]}
    assert emu.stats()["loads"] == 0


def test_slow_fault_is_consumed_by_its_path(emu):
    emu.add_fault("slow", delay=0.05, path="/v1/messages")
    raw(emu.url, "POST", "/v1/responses", RESPONSES)
    assert len(emu.faults()) == 1
    assert named_events(raw(emu.url, "POST", "/v1/messages", MESSAGES).body)[-1][0] == "message_stop"
    assert emu.faults() == []


def test_hang_then_client_leaves_is_counted_cancelled(emu):
    emu.add_fault("hang", path="/v1/messages")

    async def leave_early() -> None:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(asyncio.TimeoutError):
                async with session.post(emu.url + "/v1/messages", json=MESSAGES, timeout=aiohttp.ClientTimeout(total=0.3)):
                    pass

    asyncio.run(leave_early())
    wait_until(lambda: emu.stats()["cancelled"] == 1)
    stats = emu.stats()
    assert stats["in_flight"] == 0 and stats["requests"] == 1 and stats["by_model"] == {"llama3.2:latest": 1}


def test_stats_count_the_new_endpoints(emu):
    raw(emu.url, "POST", "/v1/responses", RESPONSES)
    raw(emu.url, "POST", "/v1/messages", MESSAGES)
    raw(emu.url, "POST", "/v1/messages", {**MESSAGES, "model": "nope"})
    stats = emu.stats()
    assert stats["requests"] == 3 and stats["loads"] == 1
    assert stats["by_model"] == {"llama3.2:latest": 2, "nope:latest": 1}
