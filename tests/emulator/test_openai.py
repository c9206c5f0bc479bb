"""OpenAI compatibility: both chat stream dialects, completions, models, errors (9.3, 10)."""

from __future__ import annotations

import json

import openai
import pytest

from tests.emulator.conftest import raw

MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]


def client(emu) -> openai.OpenAI:
    return openai.OpenAI(base_url=emu.url + "/v1", api_key="ignored", max_retries=0)


def test_chat_completion_via_sdk(emu):
    reply = client(emu).chat.completions.create(model="llama3.2", messages=MESSAGES)
    assert reply.model == "llama3.2" and reply.object == "chat.completion"
    assert reply.id.startswith("chatcmpl-") and reply.system_fingerprint == "fp_ollama"
    assert reply.choices[0].message.role == "assistant" and reply.choices[0].finish_reason == "stop"
    assert reply.usage.completion_tokens == 24
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 24


def test_chat_completion_key_order(emu):
    body = raw(emu.url, "POST", "/v1/chat/completions", {"model": "llama3.2", "messages": MESSAGES}).json()
    assert list(body) == ["id", "object", "created", "model", "system_fingerprint", "choices", "usage"]
    assert list(body["choices"][0]) == ["index", "message", "finish_reason"]


def test_max_tokens_is_length(emu):
    reply = client(emu).chat.completions.create(model="llama3.2", messages=MESSAGES, max_tokens=2)
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 2


def test_current_stream_dialect(emu):
    reply = raw(emu.url, "POST", "/v1/chat/completions", {
        "model": "llama3.2", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True},
    })
    assert reply.content_type == "text/event-stream"
    events = reply.events()
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    *content, finish, usage = chunks
    assert content[0]["choices"][0]["delta"] == {"role": "assistant", "content": content[0]["choices"][0]["delta"]["content"]}
    assert all(list(c["choices"][0]["delta"]) == ["content"] for c in content[1:])
    assert all("usage" not in c for c in content)
    assert finish["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == len(content)
    assert len({c["created"] for c in chunks}) == 1
    assert list(content[0]) == ["id", "object", "created", "model", "system_fingerprint", "choices"]


def test_legacy_stream_dialect(emulator):
    emu = emulator(version="0.32.5")
    reply = raw(emu.url, "POST", "/v1/chat/completions", {
        "model": "llama3.2", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True},
    })
    chunks = [json.loads(e) for e in reply.events()[:-1]]
    *content, last, usage = chunks
    assert all(c["choices"][0]["delta"]["role"] == "assistant" for c in content)
    assert last["choices"][0] == {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": "stop"}
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == len(content)


def test_stream_without_include_usage_has_no_usage_chunk(emu):
    chunks = list(client(emu).chat.completions.create(model="llama3.2", messages=MESSAGES, stream=True))
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    whole = client(emu).chat.completions.create(model="llama3.2", messages=MESSAGES)
    assert text == whole.choices[0].message.content


def test_completions_stream_with_usage(emu):
    reply = raw(emu.url, "POST", "/v1/completions", {
        "model": "llama3.2", "prompt": "Say hi", "stream": True, "stream_options": {"include_usage": True},
    })
    chunks = [json.loads(e) for e in reply.events()[:-1]]
    *tokens, final, usage = chunks
    assert list(tokens[0]) == ["id", "object", "created", "choices", "model", "system_fingerprint", "usage"]
    assert all(c["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0} for c in tokens)
    assert final["choices"] == [{"text": "", "index": 0, "finish_reason": "stop"}]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == len(tokens)


def test_completions_via_sdk(emu):
    reply = client(emu).completions.create(model="llama3.2", prompt="Say hi")
    assert reply.object == "text_completion" and reply.id.startswith("cmpl-")
    assert reply.choices[0].text and reply.usage.completion_tokens == 24


def test_empty_completion_prompt_loads(emu):
    body = raw(emu.url, "POST", "/v1/completions", {"model": "llama3.2", "prompt": ""}).json()
    assert body["choices"] == [{"text": "", "index": 0, "finish_reason": "load"}]


def test_models_list_and_retrieve(emu):
    sdk = client(emu)
    ids = [m.id for m in sdk.models.list()]
    assert ids == ["llama3.2:latest", "qwen2.5:7b", "nomic-embed-text:latest"]
    model = sdk.models.retrieve("llama3.2")
    assert (model.id, model.owned_by, model.object) == ("llama3.2", "library", "model")


def test_models_list_is_null_when_empty(emulator):
    emu = emulator(models=[], embedding_models=[])
    assert raw(emu.url, "GET", "/v1/models").body == b'{"object":"list","data":null}\n'


def test_unknown_model_retrieve_is_404_normalised(emu):
    reply = raw(emu.url, "GET", "/v1/models/nope")
    assert reply.status == 404
    assert reply.json()["error"] == {
        "message": "model 'nope:latest' not found", "type": "not_found_error", "param": None, "code": None,
    }


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/chat/completions", {"model": "llama3.2", "messages": []}, 400, "[] is too short - 'messages'"),
        ("/v1/chat/completions", {"model": "nope", "messages": MESSAGES}, 404, "model 'nope' not found"),
        ("/v1/chat/completions", {"model": "llama3.2", "messages": [{"role": "user", "content": 5}]}, 400,
         "invalid message content type: float64"),
        ("/v1/chat/completions", {"model": "llama3.2", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}, 400,
         "image URLs are not currently supported, please use base64 encoded data instead"),
        ("/v1/completions", {"model": "llama3.2", "prompt": "x", "stop": [1]}, 400, "invalid type for 'stop' field: float64"),
        ("/v1/completions", {"model": "llama3.2", "prompt": ["x"]}, 400,
         "json: cannot unmarshal array into Go struct field CompletionRequest.prompt of type string"),
        ("/v1/embeddings", {"model": "nomic-embed-text"}, 400, "invalid input"),
        ("/v1/embeddings", {"model": "nomic-embed-text", "input": "x", "encoding_format": "hex"}, 400,
         "Invalid value for 'encoding_format' = hex. Supported values: ['float', 'base64']."),
        ("/v1/embeddings", {"model": "nope", "input": "x"}, 404, 'model "nope" not found, try pulling it first'),
    ],
)
def test_openai_error_envelope(emu, path, body, status, message):
    reply = raw(emu.url, "POST", path, body)
    assert reply.status == status and reply.content_type == "application/json"
    assert reply.body.endswith(b"}\n")
    error_type = {400: "invalid_request_error", 404: "not_found_error"}[status]
    assert reply.json() == {"error": {"message": message, "type": error_type, "param": None, "code": None}}


def test_sdk_sees_not_found(emu):
    with pytest.raises(openai.NotFoundError):
        client(emu).chat.completions.create(model="nope", messages=MESSAGES)
