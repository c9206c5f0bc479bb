"""POST /v1/messages: the anthropic SDK's messages.create / messages.stream, and the exact
bytes Ollama writes (docs/ollama-wire-2026.md §4)."""

from __future__ import annotations

import re

import anthropic
import pytest

from tests.emulator.conftest import named_events, raw

HELLO = [{"role": "user", "content": "Hello"}]
WEATHER_TOOL = {
    "name": "get_weather", "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
REQUEST_ID = re.compile(r"^req_[0-9a-f]{24}$")


def client(emu) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=emu.url, api_key="sk-ant-ignored", max_retries=0)


@pytest.fixture
def emu(emulator):
    return emulator(models=["llama3.2", "qwen3:8b"], response_tokens=6)


def test_create_text_reply(emu):
    message = client(emu).messages.create(model="llama3.2", max_tokens=100, messages=HELLO)
    chat = raw(emu.url, "POST", "/api/chat", {"model": "llama3.2", "messages": HELLO, "stream": False}).json()
    assert re.fullmatch(r"msg_[0-9a-f]{24}", message.id) and message.model == "llama3.2"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == chat["message"]["content"]
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert (message.usage.input_tokens, message.usage.output_tokens) == (chat["prompt_eval_count"], 6)


def test_non_streamed_body_is_struct_ordered_without_stop_sequence(emu):
    reply = raw(emu.url, "POST", "/v1/messages", {"model": "llama3.2", "max_tokens": 3, "messages": HELLO},
                headers={"x-api-key": "whatever", "anthropic-version": "2023-06-01"})
    assert reply.status == 200 and reply.content_type == "application/json" and reply.body.endswith(b"}\n")
    body = reply.json()
    assert list(body) == ["id", "type", "role", "model", "content", "stop_reason", "usage"]
    assert body["stop_reason"] == "max_tokens" and body["usage"]["output_tokens"] == 3
    assert list(body["usage"]) == ["input_tokens", "output_tokens"]


def test_thinking_block_first_and_relaxed_for_models_that_cannot_think(emu):
    thought = client(emu).messages.create(model="qwen3:8b", max_tokens=100, messages=HELLO)
    assert [block.type for block in thought.content] == ["thinking", "text"]
    assert thought.content[0].thinking and thought.usage.output_tokens == 9
    quiet = client(emu).messages.create(
        model="qwen3:8b", max_tokens=100, messages=HELLO, thinking={"type": "disabled"},
    )
    assert [block.type for block in quiet.content] == ["text"]
    relaxed = client(emu).messages.create(
        model="llama3.2", max_tokens=100, messages=HELLO, thinking={"type": "enabled", "budget_tokens": 1024},
    )
    assert [block.type for block in relaxed.content] == ["text"]  # no 400 "does not support thinking"


def test_tool_use_round_trip(emu):
    first = client(emu).messages.create(model="llama3.2", max_tokens=100, messages=HELLO, tools=[WEATHER_TOOL])
    (tool_use,) = first.content
    assert first.stop_reason == "tool_use" and tool_use.type == "tool_use"
    assert tool_use.name == "get_weather" and tool_use.input == {"city": "emulated"}
    assert tool_use.id.startswith("call_")  # Ollama's id, not toolu_...
    second = client(emu).messages.create(model="llama3.2", max_tokens=100, tools=[WEATHER_TOOL], messages=[
        *HELLO,
        {"role": "assistant", "content": [tool_use.model_dump(include={"type", "id", "name", "input"})]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "sunny"}]},
    ])
    assert [block.type for block in second.content] == ["text"] and second.stop_reason == "end_turn"


def test_stream_with_thinking_text_and_tool_use(emu):
    with client(emu).messages.stream(model="qwen3:8b", max_tokens=100, messages=HELLO) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert "ping" not in kinds and "error" not in kinds
    assert [block.type for block in final.content] == ["thinking", "text"]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 9
    with client(emu).messages.stream(model="qwen3:8b", max_tokens=100, messages=HELLO, tools=[WEATHER_TOOL]) as stream:
        list(stream)
        called = stream.get_final_message()
    assert [block.type for block in called.content] == ["thinking", "tool_use"]
    assert called.content[1].input == {"city": "emulated"} and called.stop_reason == "tool_use"


def test_stream_bytes_and_event_order(emu):
    reply = raw(emu.url, "POST", "/v1/messages", {
        "model": "qwen3:8b", "max_tokens": 100, "messages": HELLO, "stream": True, "tools": [WEATHER_TOOL],
    })
    assert reply.status == 200 and reply.content_type == "text/event-stream"
    assert reply.headers["Cache-Control"] == "no-cache"
    records = named_events(reply.body)
    shape = [(name, data.get("index"), (data.get("content_block") or data.get("delta") or {}).get("type")) for name, data, _ in records]
    assert shape == [
        ("message_start", None, None),
        ("content_block_start", 0, "thinking"),
        *[("content_block_delta", 0, "thinking_delta")] * 3,
        ("content_block_stop", 0, None),
        ("content_block_start", 1, "tool_use"),
        ("content_block_delta", 1, "input_json_delta"),
        ("content_block_stop", 1, None),
        ("message_delta", None, None),
        ("message_stop", None, None),
    ]
    start = records[0][2]
    assert start.startswith(b'{"type":"message_start","message":{"id":"msg_') and b'"content":[],"usage":' in start
    assert b"stop_reason" not in start
    assert records[1][2] == b'{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}'
    tool_start = records[6][1]["content_block"]
    assert list(tool_start) == ["type", "id", "name", "input"] and tool_start["input"] == {}
    assert records[7][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"city":"emulated"}'}
    delta = records[-2][1]
    assert delta["delta"] == {"stop_reason": "tool_use"} and delta["usage"] == {"input_tokens": 8, "output_tokens": 3}


def test_message_start_reports_the_length_estimate(emu):
    system = "You are terse." * 10
    records = named_events(raw(emu.url, "POST", "/v1/messages", {
        "model": "llama3.2", "max_tokens": 10, "system": system, "messages": HELLO, "stream": True,
    }).body)
    estimate = (len(system) + len("user") + len("Hello")) // 4
    assert records[0][1]["message"]["usage"] == {"input_tokens": estimate, "output_tokens": 0}
    assert records[-2][1]["usage"]["input_tokens"] != estimate  # the real count comes at the end


def test_stop_sequence_reports_end_turn(emu):
    full = client(emu).messages.create(model="llama3.2", max_tokens=100, messages=HELLO).content[0].text
    word = full.split()[2]
    cut = client(emu).messages.create(model="llama3.2", max_tokens=100, messages=HELLO, stop_sequences=[word])
    assert cut.stop_reason == "end_turn" and cut.stop_sequence is None
    assert cut.content[0].text == full[: full.index(word)]


@pytest.mark.parametrize(("body", "message"), [
    ({"max_tokens": 10, "messages": HELLO}, "model is required"),
    ({"model": "llama3.2", "messages": HELLO}, "max_tokens is required and must be positive"),
    ({"model": "llama3.2", "max_tokens": 10, "messages": []}, "messages is required"),
    ({"model": "nope", "max_tokens": 0, "messages": []}, "max_tokens is required and must be positive"),
    ({"model": "llama3.2", "max_tokens": 10, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://x/a.png"}}]}]},
     "invalid image source type: url. Only base64 images are supported."),
    ({"model": "llama3.2", "max_tokens": 10, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "ab!c"}}]}]},
     "invalid base64 image data: illegal base64 data at input byte 2"),
    ({"model": "llama3.2", "max_tokens": 10, "messages": [{"role": "assistant", "content": [
        {"type": "tool_use", "name": "f", "input": {}}]}]}, "tool_use block missing required 'id' field"),
    ({"model": "llama3.2", "max_tokens": 10, "messages": HELLO, "tools": [{"name": "f", "input_schema": "x"}]},
     'invalid input_schema for tool "f": json: cannot unmarshal string into Go value of type api.ToolFunctionParameters'),
    ({"model": "llama3.2", "max_tokens": 10, "messages": HELLO, "tools": ["get_weather"]},
     "json: cannot unmarshal string into Go struct field MessagesRequest.tools of type anthropic.Tool"),
    ({"model": "llama3.2", "max_tokens": 10, "messages": HELLO, "thinking": {"type": True}},
     "json: cannot unmarshal bool into Go struct field ThinkingConfig.thinking.type of type string"),
    ({"model": "llama3.2", "max_tokens": "10", "messages": HELLO},
     "json: cannot unmarshal string into Go struct field MessagesRequest.max_tokens of type int"),
])
def test_validation_errors_in_order_and_shape(emu, body, message):
    reply = raw(emu.url, "POST", "/v1/messages", body)
    assert reply.status == 400 and reply.content_type == "application/json; charset=utf-8"
    assert not reply.body.endswith(b"\n")
    data = reply.json()
    assert list(data) == ["type", "error", "request_id"] and REQUEST_ID.match(data["request_id"])
    assert data["type"] == "error" and data["error"] == {"type": "invalid_request_error", "message": message}


def test_unknown_blocks_are_dropped(emu):
    reply = client(emu).messages.create(model="llama3.2", max_tokens=10, messages=[{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "data": "x"}}, {"type": "text", "text": "Hello"},
    ]}])
    assert reply.content[0].type == "text"


def test_handler_errors_map_status_to_type(emu):
    with pytest.raises(anthropic.NotFoundError) as missing:
        client(emu).messages.create(model="claude-3-5-sonnet", max_tokens=10, messages=HELLO)
    assert missing.value.body["error"] == {"type": "not_found_error", "message": "model 'claude-3-5-sonnet' not found"}
    emu.add_fault("busy")
    with pytest.raises(anthropic.InternalServerError) as busy:
        client(emu).messages.create(model="llama3.2", max_tokens=10, messages=HELLO)
    assert busy.value.status_code == 503 and busy.value.body["error"]["type"] == "overloaded_error"
    for status, kind in ((429, "rate_limit_error"), (401, "authentication_error"), (403, "permission_error"), (500, "api_error")):
        emu.add_fault("error", status=status, message="nope")
        reply = raw(emu.url, "POST", "/v1/messages", {"model": "llama3.2", "max_tokens": 10, "messages": HELLO, "stream": True})
        assert (reply.status, reply.json()["error"]["type"]) == (status, kind)
        assert reply.content_type == "application/json" and reply.body.endswith(b"\n")


def test_embedding_model_cannot_chat(emulator):
    emu = emulator()
    reply = raw(emu.url, "POST", "/v1/messages", {"model": "nomic-embed-text", "max_tokens": 10, "messages": HELLO})
    assert reply.status == 400 and reply.json()["error"]["message"] == '"nomic-embed-text" does not support chat'
