"""Fault injection through /_emulator/faults, and what each kind looks like on the wire."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import ollama
import openai
import pytest

from router.wire import BUSY_MESSAGE
from tests.emulator.conftest import raw

CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}


def test_faults_can_be_listed_and_cleared(emu):
    added = emu.add_fault("error", count=2, model="LLaMA3.2", status=502)
    assert added["kind"] == "error" and added["count"] == 2 and added["status"] == 502
    assert [f["id"] for f in emu.faults()] == [added["id"]]
    emu.clear_faults()
    assert emu.faults() == []


def test_bad_fault_spec_is_400(emu):
    reply = raw(emu.url, "POST", "/_emulator/faults", {"kind": "explode"})
    assert reply.status == 400 and "kind" in reply.json()["error"]


def test_error_fault_fails_before_first_byte_in_both_shapes(emu):
    emu.add_fault("error", count=2, status=429, message="too many")
    native = raw(emu.url, "POST", "/api/chat", CHAT)
    assert (native.status, native.body) == (429, b'{"error":"too many"}')
    assert native.content_type == "application/json"  # a streamed request: no charset
    openai_reply = raw(emu.url, "POST", "/v1/chat/completions", CHAT)
    assert openai_reply.status == 429
    assert openai_reply.json() == {"error": {"message": "too many", "type": "api_error", "param": None, "code": None}}
    assert raw(emu.url, "POST", "/api/chat", CHAT).status == 200  # count used up


def test_busy_fault_is_the_503(emu):
    emu.add_fault("busy")
    with pytest.raises(ollama.ResponseError) as caught:
        ollama.Client(host=emu.url).chat(**CHAT)
    assert caught.value.status_code == 503 and caught.value.error == BUSY_MESSAGE


def test_fault_matches_only_its_model(emu):
    emu.add_fault("error", model="qwen2.5:7b")
    assert raw(emu.url, "POST", "/api/chat", CHAT).status == 200
    assert raw(emu.url, "POST", "/api/chat", {**CHAT, "model": "qwen2.5:7b"}).status == 500


def test_fault_can_match_a_path(emu):
    emu.add_fault("error", path="/v1/chat/completions")
    assert raw(emu.url, "POST", "/api/chat", CHAT).status == 200
    assert raw(emu.url, "POST", "/v1/chat/completions", CHAT).status == 500


def test_negative_count_matches_until_cleared(emu):
    emu.add_fault("busy", count=-1)
    assert [raw(emu.url, "POST", "/api/chat", CHAT).status for _ in range(3)] == [503] * 3
    emu.clear_faults()
    assert raw(emu.url, "POST", "/api/chat", CHAT).status == 200


async def test_hang_sends_nothing_until_the_client_leaves(emu):
    emu.add_fault("hang")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(asyncio.TimeoutError):
            async with session.post(emu.url + "/api/chat", json=CHAT, timeout=aiohttp.ClientTimeout(total=0.3)):
                pass
    deadline = time.monotonic() + 5
    while emu.stats()["cancelled"] != 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert emu.stats()["in_flight"] == 0


def test_cut_native_stream_ends_with_error_line(emu):
    emu.add_fault("cut", after_tokens=3)
    reply = raw(emu.url, "POST", "/api/chat", CHAT)
    assert reply.status == 200
    lines = reply.lines()
    assert len(lines) == 4 and all(not line["done"] for line in lines[:3])
    assert lines[3] == {"error": "an error was encountered while running the model: unexpected EOF"}


def test_cut_openai_stream_ends_without_done(emu):
    emu.add_fault("cut", after_tokens=2, message="boom")
    reply = raw(emu.url, "POST", "/v1/chat/completions", {**CHAT, "stream": True})
    events = reply.events()
    assert "[DONE]" not in events
    chunks = [json.loads(e) for e in events]
    assert len(chunks) == 3 and chunks[-1]["choices"][0]["delta"]["content"] == ""
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)


def test_cut_non_streamed_is_a_500(emu):
    emu.add_fault("cut", after_tokens=2, message="boom")
    reply = raw(emu.url, "POST", "/api/chat", {**CHAT, "stream": False})
    assert (reply.status, reply.json()) == (500, {"error": "boom"})


def test_cut_via_openai_sdk_stream_raises_or_truncates(emu):
    emu.add_fault("cut", after_tokens=1)
    sdk = openai.OpenAI(base_url=emu.url + "/v1", api_key="x", max_retries=0)
    chunks = list(sdk.chat.completions.create(model="llama3.2", messages=CHAT["messages"], stream=True))
    assert all(c.choices[0].finish_reason is None for c in chunks)


def test_slow_delays_the_first_token(emu):
    emu.add_fault("slow", delay=0.3)
    started = time.monotonic()
    reply = raw(emu.url, "POST", "/api/generate", {"model": "llama3.2", "prompt": "x", "stream": False})
    assert time.monotonic() - started >= 0.3
    assert reply.json()["total_duration"] >= 300_000_000


def test_load_fail_fails_the_next_load_with_500(emu):
    emu.add_fault("load_fail", model="llama3.2")
    failed = raw(emu.url, "POST", "/api/chat", CHAT)
    assert failed.status == 500 and "llama runner process has terminated" in failed.json()["error"]
    assert raw(emu.url, "GET", "/api/ps").json()["models"] == []
    assert raw(emu.url, "POST", "/api/chat", CHAT).status == 200  # the next load works
    assert emu.stats()["loads"] == 1


def test_load_fail_waits_for_a_load(emu):
    raw(emu.url, "POST", "/api/generate", {"model": "llama3.2"})
    emu.add_fault("load_fail")
    assert raw(emu.url, "POST", "/api/chat", CHAT).status == 200  # already loaded: no load, no failure
    assert len(emu.faults()) == 1
    assert raw(emu.url, "POST", "/api/chat", {**CHAT, "model": "qwen2.5:7b"}).status == 500
