"""Thinking output and synthesised tool calls, natively and through the OpenAI layer (5.1, 5.2, 10.1)."""

from __future__ import annotations

import json
import re

import ollama
import openai

from tests.emulator.conftest import raw

USER = [{"role": "user", "content": "What is the weather in Paris?"}]
TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "kelvin"]}},
            "required": ["city", "unit"],
        },
    },
}]


def thinking_emulator(emulator):
    return emulator(models=["qwen3:8b", "llama3.2"], response_tokens=10)


def test_thinking_model_streams_reasoning_first(emulator):
    emu = thinking_emulator(emulator)
    lines = raw(emu.url, "POST", "/api/chat", {"model": "qwen3:8b", "messages": USER}).lines()
    thinking = [line for line in lines if "thinking" in line["message"]]
    assert len(thinking) == 5 and lines[: len(thinking)] == thinking
    assert all(line["message"]["content"] == "" for line in thinking)
    assert list(thinking[0]["message"]) == ["role", "content", "thinking"]
    assert lines[-1]["eval_count"] == 15


def test_thinking_non_streamed_and_think_false(emulator):
    emu = thinking_emulator(emulator)
    client = ollama.Client(host=emu.url)
    thought = client.chat(model="qwen3:8b", messages=USER)
    assert thought.message.thinking and thought.message.content
    plain = client.chat(model="qwen3:8b", messages=USER, think=False)
    assert plain.message.thinking is None and plain.message.content == thought.message.content
    generated = raw(emu.url, "POST", "/api/generate", {"model": "qwen3:8b", "prompt": "x", "stream": False}).json()
    assert list(generated)[:4] == ["model", "created_at", "response", "thinking"]


def test_openai_reasoning_field(emulator):
    emu = thinking_emulator(emulator)
    body = raw(emu.url, "POST", "/v1/chat/completions", {"model": "qwen3:8b", "messages": USER}).json()
    assert list(body["choices"][0]["message"]) == ["role", "content", "reasoning"]
    chunks = [json.loads(e) for e in raw(emu.url, "POST", "/v1/chat/completions", {
        "model": "qwen3:8b", "messages": USER, "stream": True,
    }).events()[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "reasoning": chunks[0]["choices"][0]["delta"]["reasoning"]}
    assert chunks[1]["choices"][0]["delta"]["content"] == "" and "reasoning" in chunks[1]["choices"][0]["delta"]
    none = raw(emu.url, "POST", "/v1/chat/completions", {"model": "qwen3:8b", "messages": USER, "reasoning_effort": "none"}).json()
    assert "reasoning" not in none["choices"][0]["message"]


def test_native_tool_call(emu):
    reply = ollama.Client(host=emu.url).chat(model="llama3.2", messages=USER, tools=TOOLS)
    call = reply.message.tool_calls[0]
    assert reply.message.content == "" and reply.done_reason == "stop"
    assert call.function.name == "get_weather"
    assert call.function.arguments == {"city": "emulated", "unit": "celsius"}
    raw_body = raw(emu.url, "POST", "/api/chat", {"model": "llama3.2", "messages": USER, "tools": TOOLS, "stream": False}).json()
    native_call = raw_body["message"]["tool_calls"][0]
    assert re.fullmatch(r"call_[a-z0-9]{8}", native_call["id"]) and native_call["function"]["index"] == 0


def test_odd_required_entries_are_skipped_on_every_api(emu):
    # A schema whose `required` holds an object or a list (hostile or buggy
    # clients): the call names only the string entries, never a 500.
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": [{}, ["x"], 3, "city"]}
    for path, body, arguments in (
        ("/api/chat", {"messages": USER, "stream": False, "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}]},
         lambda reply: reply["message"]["tool_calls"][0]["function"]["arguments"]),
        ("/v1/chat/completions", {"messages": USER, "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}]},
         lambda reply: json.loads(reply["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])),
        ("/v1/messages", {"messages": USER, "max_tokens": 9, "tools": [{"name": "f", "input_schema": schema}]},
         lambda reply: reply["content"][0]["input"]),
        ("/v1/responses", {"input": USER, "tools": [{"type": "function", "name": "f", "parameters": schema}]},
         lambda reply: json.loads(reply["output"][0]["arguments"])),
    ):
        reply = raw(emu.url, "POST", path, {"model": "llama3.2", **body})
        assert reply.status == 200, (path, reply.body)
        assert arguments(reply.json()) == {"city": "emulated"}, path


def test_native_tool_call_streams_in_one_line(emu):
    lines = raw(emu.url, "POST", "/api/chat", {"model": "llama3.2", "messages": USER, "tools": TOOLS}).lines()
    assert len(lines) == 2
    assert lines[0]["message"]["content"] == "" and len(lines[0]["message"]["tool_calls"]) == 1
    assert lines[1]["done"] is True


def test_tool_result_gets_a_text_answer(emu):
    history = [*USER, {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}, {"role": "tool", "content": "18C, sunny", "tool_name": "get_weather"}]
    reply = ollama.Client(host=emu.url).chat(model="llama3.2", messages=history, tools=TOOLS)
    assert reply.message.content and not reply.message.tool_calls


def test_openai_tool_calls(emu):
    sdk = openai.OpenAI(base_url=emu.url + "/v1", api_key="x", max_retries=0)
    reply = sdk.chat.completions.create(model="llama3.2", messages=USER, tools=TOOLS)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function" and json.loads(call.function.arguments) == {"city": "emulated", "unit": "celsius"}
    chunks = list(sdk.chat.completions.create(model="llama3.2", messages=USER, tools=TOOLS, stream=True))
    streamed = [c for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert len(streamed) == 1 and streamed[0].choices[0].delta.tool_calls[0].function.name == "get_weather"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_legacy_dialect_tool_call_finish(emulator):
    emu = emulator(version="0.32.0")
    events = raw(emu.url, "POST", "/v1/chat/completions", {
        "model": "llama3.2", "messages": USER, "tools": TOOLS, "stream": True,
    }).events()
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant" and chunks[0]["choices"][0]["delta"]["tool_calls"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
