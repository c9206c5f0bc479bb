"""POST /v1/responses: the openai SDK's responses.create / responses.stream, and the exact
bytes Ollama writes (docs/ollama-wire-2026.md §3)."""

from __future__ import annotations

import json

import openai
import pytest

from tests.emulator.conftest import named_events, raw

WEATHER_TOOL = {
    "type": "function", "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def client(emu) -> openai.OpenAI:
    return openai.OpenAI(base_url=emu.url + "/v1", api_key="ignored", max_retries=0)


@pytest.fixture
def emu(emulator):
    return emulator(models=["llama3.2", "qwen3:8b"], response_tokens=6)


def test_create_answers_the_same_text_as_chat_completions(emu):
    reply = client(emu).responses.create(model="llama3.2", input="Why is the sky blue?")
    chat = client(emu).chat.completions.create(
        model="llama3.2", messages=[{"role": "user", "content": "Why is the sky blue?"}],
    )
    assert reply.status == "completed" and reply.model == "llama3.2"
    assert reply.output_text == chat.choices[0].message.content
    assert reply.id.startswith("resp_") and reply.output[0].id.startswith("msg_")
    assert reply.usage.output_tokens == 6
    assert reply.usage.total_tokens == reply.usage.input_tokens + 6
    assert reply.usage.input_tokens == chat.usage.prompt_tokens


def test_non_streamed_body_is_struct_ordered_with_a_newline(emu):
    reply = raw(emu.url, "POST", "/v1/responses", {"model": "llama3.2", "input": "Say hi", "temperature": 0.5})
    assert reply.status == 200 and reply.content_type == "application/json" and reply.body.endswith(b"}\n")
    body = reply.json()
    assert list(body) == [
        "id", "object", "created_at", "completed_at", "status", "incomplete_details", "model",
        "previous_response_id", "instructions", "output", "error", "tools", "tool_choice", "truncation",
        "parallel_tool_calls", "text", "top_p", "presence_penalty", "frequency_penalty", "top_logprobs",
        "temperature", "reasoning", "usage", "max_output_tokens", "max_tool_calls", "store", "background",
        "service_tier", "metadata", "safety_identifier", "prompt_cache_key",
    ]
    assert b'"top_p":1,' in reply.body and b'"temperature":0.5,' in reply.body  # float64 1 prints as 1
    assert body["output"][0]["content"][0] == {
        "type": "output_text", "text": body["output"][0]["content"][0]["text"], "annotations": [], "logprobs": [],
    }
    assert (body["store"], body["tool_choice"], body["metadata"], body["reasoning"]) == (False, "auto", {}, None)


def test_instructions_and_limits_are_echoed(emu):
    body = raw(emu.url, "POST", "/v1/responses", {
        "model": "llama3.2", "input": "Say hi", "instructions": "Be brief <always>", "max_output_tokens": 2,
        "truncation": "auto", "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object", "b": 1, "a": 2}}},
    })
    assert b"Be brief \\u003calways\\u003e" in body.body  # Go escapes <, > and &
    data = body.json()
    assert data["instructions"] == "Be brief <always>" and data["max_output_tokens"] == 2
    assert data["usage"]["output_tokens"] == 2 and data["truncation"] == "auto"
    assert b'"format":{"type":"json_schema","name":"s","schema":{"type":"object","b":1,"a":2}}' in body.body
    assert data["output"][0]["content"][0]["text"].startswith('{"response"')  # JSON asked for, cut at 2 tokens


def test_thinking_model_reasoning_item_comes_first(emu):
    reply = client(emu).responses.create(model="qwen3:8b", input="Say hi", reasoning={"effort": "low"})
    reasoning, message = reply.output
    assert reasoning.type == "reasoning" and reasoning.id == f"rs_{reply.id}"
    assert reasoning.summary[0].text == reasoning.encrypted_content != ""
    assert message.type == "message" and reply.reasoning.effort == "low"
    plain = client(emu).responses.create(model="qwen3:8b", input="Say hi", reasoning={"effort": "none"})
    assert [item.type for item in plain.output] == ["message"]


def test_stream_event_order_for_a_thinking_model(emu):
    with client(emu).responses.stream(model="qwen3:8b", input="Say hi") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    thinking = kinds.count("response.reasoning_summary_text.delta")
    text = kinds.count("response.output_text.delta")
    assert (thinking, text) == (3, 6)
    assert kinds == [
        "response.created", "response.in_progress", "response.output_item.added",
        *["response.reasoning_summary_text.delta"] * 3,
        "response.reasoning_summary_text.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added",
        *["response.output_text.delta"] * 6,
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert [event.output_index for event in events if event.type == "response.output_item.added"] == [0, 1]
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.output_text == "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert final.usage.output_tokens == 9


def test_stream_framing_is_event_and_sorted_data_without_done(emu):
    reply = raw(emu.url, "POST", "/v1/responses", {"model": "llama3.2", "input": "Say hi", "stream": True})
    assert reply.status == 200 and reply.content_type == "text/event-stream"
    assert reply.headers["Cache-Control"] == "no-cache" and reply.headers["Connection"] == "keep-alive"
    assert b"[DONE]" not in reply.body
    records = named_events(reply.body)
    for name, data, payload in records:
        assert data["type"] == name
        keys = list(json.loads(payload))
        assert keys == sorted(keys)
    assert [data["sequence_number"] for _, data, _ in records] == list(range(len(records)))
    created = records[0][1]["response"]
    assert list(created) == sorted(created) and created["status"] == "in_progress" and created["usage"] is None
    completed = records[-1][1]["response"]
    assert records[-1][0] == "response.completed" and completed["completed_at"] is not None
    assert completed["output"][0]["content"][0]["text"] == "".join(
        data["delta"] for name, data, _ in records if name == "response.output_text.delta"
    )
    assert list(completed["usage"]) == sorted(completed["usage"])


def test_tool_call_is_one_function_call_item(emu):
    reply = client(emu).responses.create(model="llama3.2", input="Weather in Paris?", tools=[WEATHER_TOOL])
    (call,) = reply.output
    assert call.type == "function_call" and call.name == "get_weather" and call.status == "completed"
    assert json.loads(call.arguments) == {"city": "emulated"}
    assert call.id == f"fc_{reply.id}_0" and call.call_id.startswith("call_")
    follow_up = client(emu).responses.create(model="llama3.2", tools=[WEATHER_TOOL], input=[
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
    ])
    assert [item.type for item in follow_up.output] == ["message"] and follow_up.output_text


def test_streamed_tool_call_arguments_arrive_in_one_delta(emu):
    records = named_events(raw(emu.url, "POST", "/v1/responses", {
        "model": "llama3.2", "input": "Weather?", "tools": [WEATHER_TOOL], "stream": True,
    }).body)
    names = [name for name, _, _ in records]
    assert names == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed",
    ]
    added, delta = records[2][1], records[3][1]
    assert added["item"]["status"] == "in_progress" and added["item"]["arguments"] == ""
    assert json.loads(delta["delta"]) == {"city": "emulated"}
    tools = records[0][1]["response"]["tools"]
    assert tools == [{
        "description": "Weather for a city", "name": "get_weather", "parameters": WEATHER_TOOL["parameters"],
        "strict": None, "type": "function",
    }]


def test_namespace_tools_are_called_by_qualified_name(emu):
    namespace = {"type": "namespace", "name": "weather", "tools": [WEATHER_TOOL]}
    reply = client(emu).responses.create(model="llama3.2", input="Weather?", tools=[namespace])
    assert reply.output[0].name == "weather.get_weather"


def test_input_without_messages_only_loads_the_model(emu):
    reply = raw(emu.url, "POST", "/v1/responses", {"model": "llama3.2"}).json()
    assert reply["output"][0]["content"][0]["text"] == "" and reply["usage"]["total_tokens"] == 0
    assert emu.stats()["loads"] == 1
    streamed = named_events(raw(emu.url, "POST", "/v1/responses", {"model": "llama3.2", "stream": True}).body)
    assert [name for name, _, _ in streamed] == ["response.created", "response.in_progress", "response.completed"]
    assert streamed[-1][1]["response"]["output"] == []


@pytest.mark.parametrize(("body", "message"), [
    ({"input": [{"type": "bogus"}]}, 'input[0]: unknown input item type: "bogus"'),
    ({"input": ["hi", {"content": "x"}]}, "input[0]: json: cannot unmarshal string into Go value of type "
                                           'struct { Type string "json:\\"type\\""; Role string "json:\\"role\\"" }'),
    ({"input": [{"role": "user", "content": "x"}, {"content": "x"}]}, "input[1]: input item missing required 'type' field"),
    ({"input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "input[0]: content[0]: unknown content type: input_audio"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "file inputs are not currently supported"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/a.png"}]}]},
     "image URLs are not currently supported, please use base64 encoded data instead"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "data:image/gif;base64,AAAA"}]}]},
     "invalid image input"),
    ({"input": 5}, "input must be a string or array: json: cannot unmarshal number into Go value of type []json.RawMessage"),
    ({"input": "x", "reasoning": {"effort": "extreme"}},
     'invalid reasoning value: "extreme" (must be "minimal", "low", "medium", "high", "xhigh", "ultra", "max", or "none")'),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{oops"}]},
     "failed to parse function call arguments: invalid character 'o' looking for beginning of object key string"),
    ({"input": [{"role": "user", "content": [{"type": "input_text", "text": 5}]}]},
     "input[0]: content[0]: json: cannot unmarshal number into Go struct field ResponsesTextContent.text of type string"),
    ({"input": "x", "text": {"format": "json"}},
     "json: cannot unmarshal string into Go struct field ResponsesText.text.format of type openai.ResponsesTextFormat"),
    ({"input": "x", "max_output_tokens": "9"},
     "json: cannot unmarshal string into Go struct field ResponsesRequest.max_output_tokens of type int"),
])
def test_request_validation_is_a_gin_style_openai_error(emu, body, message):
    reply = raw(emu.url, "POST", "/v1/responses", {"model": "llama3.2", **body})
    assert reply.status == 400 and reply.content_type == "application/json; charset=utf-8"
    assert not reply.body.endswith(b"\n")
    assert reply.json() == {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}


def test_empty_body_is_the_decoders_eof(emu):
    reply = raw(emu.url, "POST", "/v1/responses", b"")
    assert reply.status == 400 and reply.json()["error"]["message"] == "EOF"


def test_chat_handler_errors_are_written_with_status_derived_types(emu):
    missing = raw(emu.url, "POST", "/v1/responses", {"model": "nope", "input": "x", "stream": True})
    assert missing.status == 404 and missing.body.endswith(b"}\n") and missing.content_type == "application/json"
    assert missing.headers["Cache-Control"] == "no-cache"  # set for the stream before the handler failed
    assert missing.json()["error"] == {"message": "model 'nope' not found", "type": "not_found_error", "param": None, "code": None}
    with pytest.raises(openai.BadRequestError) as bad:
        client(emu).responses.create(model="llama3.2", input="x", reasoning={"effort": "high"})
    assert bad.value.body["message"] == '"llama3.2" does not support thinking'
    with pytest.raises(openai.BadRequestError, match="model is required"):
        client(emu).responses.create(model="", input="x")


def test_ignored_fields_do_not_matter(emu):
    body = raw(emu.url, "POST", "/v1/responses", {
        "model": "llama3.2", "input": "Say hi", "previous_response_id": "resp_1", "store": True,
        "tool_choice": "required", "metadata": {"a": "b"}, "parallel_tool_calls": False,
    }).json()
    assert (body["previous_response_id"], body["store"], body["metadata"], body["parallel_tool_calls"]) == (None, False, {}, True)
