"""/api/generate and /api/chat: streams, final lines, omission, echo, determinism (2, 4, 5, 7.5)."""

from __future__ import annotations

import json
import re

import ollama
import openai
import pytest

from tests.emulator.conftest import raw

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z$")
METRICS = ["total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration"]
CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "Why is the sky blue?"}]}


def test_generate_streams_ndjson_lines_then_a_final_line(emu):
    reply = raw(emu.url, "POST", "/api/generate", {"model": "llama3.2", "prompt": "Why is the sky blue?"})
    assert reply.status == 200 and reply.content_type == "application/x-ndjson"
    lines = reply.lines()
    *tokens, final = lines
    assert len(tokens) == 24
    for line in tokens:
        assert list(line) == ["model", "created_at", "response", "done"]
        assert line["done"] is False and RFC3339_UTC.match(line["created_at"])
    assert list(final) == ["model", "created_at", "response", "done", "done_reason", "context", *METRICS]
    assert final["response"] == "" and final["done_reason"] == "stop"
    assert final["eval_count"] == 24
    assert len(final["context"]) == final["prompt_eval_count"] + final["eval_count"]


def test_stream_lines_are_flushed_one_chunk_each(emu):
    import socket

    sock = socket.create_connection(("127.0.0.1", emu.port))
    body = b'{"model":"llama3.2","prompt":"hi"}'
    sock.sendall(b"POST /api/generate HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    data = b""
    while not data.endswith(b"0\r\n\r\n"):
        chunk = sock.recv(65536)
        assert chunk
        data += chunk
    sock.close()
    head, _, chunked = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    # each HTTP chunk carries exactly one JSON line
    sizes_and_payloads = re.findall(rb"([0-9a-f]+)\r\n(.*?)\r\n", chunked, re.S)
    payloads = [p for size, p in sizes_and_payloads if int(size, 16)]
    assert len(payloads) == 25
    assert all(p.count(b"\n") == 1 and p.endswith(b"\n") for p in payloads)


def test_generate_non_streamed_is_one_object(emu):
    reply = raw(emu.url, "POST", "/api/generate", {"model": "llama3.2", "prompt": "hi", "stream": False})
    body = reply.json()
    assert reply.content_type == "application/json; charset=utf-8"
    assert body["done"] is True and len(body["response"].split()) == 23
    assert body["response"].endswith(".")


def test_raw_generate_has_no_context(emu):
    body = raw(emu.url, "POST", "/api/generate", {"model": "llama3.2", "prompt": "hi", "stream": False, "raw": True}).json()
    assert "context" not in body


def test_chat_stream_shape_via_client(emu):
    client = ollama.Client(host=emu.url)
    parts = list(client.chat(model="llama3.2", messages=CHAT["messages"], stream=True))
    assert all(p.message.role == "assistant" for p in parts)
    assert parts[-1].done and parts[-1].done_reason == "stop" and parts[-1].message.content == ""
    assert parts[-1].eval_count == len(parts) - 1


def test_chat_final_line_key_order_and_no_context(emu):
    lines = raw(emu.url, "POST", "/api/chat", CHAT).lines()
    assert list(lines[0]) == ["model", "created_at", "message", "done"]
    assert lines[0]["message"] == {"role": "assistant", "content": lines[0]["message"]["content"]}
    assert list(lines[-1]) == ["model", "created_at", "message", "done", "done_reason", *METRICS]


def test_chat_non_streamed_concatenates(emu):
    streamed = raw(emu.url, "POST", "/api/chat", CHAT).lines()
    whole = raw(emu.url, "POST", "/api/chat", {**CHAT, "stream": False}).json()
    assert whole["message"]["content"] == "".join(line["message"]["content"] for line in streamed)


def test_same_request_same_text_and_seed_changes_it(emu):
    client = ollama.Client(host=emu.url)
    first = client.generate(model="llama3.2", prompt="tell me").response
    again = client.generate(model="llama3.2", prompt="tell me").response
    seeded = client.generate(model="llama3.2", prompt="tell me", options={"seed": 7}).response
    other = client.generate(model="llama3.2", prompt="tell me more").response
    assert first == again
    assert seeded != first and other != first


def test_model_echoes_request_string(emu):
    for name in ("llama3.2", "LLaMA3.2:latest", "library/llama3.2", "registry.ollama.ai/library/llama3.2:latest"):
        body = raw(emu.url, "POST", "/api/generate", {"model": name, "prompt": "x", "stream": False}).json()
        assert body["model"] == name


def test_num_predict_gives_length(emu):
    reply = ollama.Client(host=emu.url).generate(model="llama3.2", prompt="x", options={"num_predict": 3})
    assert reply.done_reason == "length" and reply.eval_count == 3


def test_stop_sequence_cuts_the_answer(emu):
    client = ollama.Client(host=emu.url)
    full = client.generate(model="llama3.2", prompt="x").response
    word = full.split()[3]
    cut = client.generate(model="llama3.2", prompt="x", options={"stop": [word]}).response
    assert word not in cut and full.startswith(cut)


def test_durations_are_consistent_nanoseconds(emulator):
    emu = emulator(tokens_per_second=200, load_time=0.05)
    body = ollama.Client(host=emu.url).generate(model="llama3.2", prompt="hello there")
    assert body.load_duration >= 50_000_000  # includes the cold load
    assert body.eval_duration >= 24 / 200 * 1e9 * 0.9
    parts = body.load_duration + body.prompt_eval_duration + body.eval_duration
    assert body.total_duration >= parts


def test_warm_load_duration_is_small(emulator):
    emu = emulator(load_time=0.2)
    client = ollama.Client(host=emu.url)
    client.generate(model="llama3.2", prompt="x")
    assert client.generate(model="llama3.2", prompt="x").load_duration < 100_000_000


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/api/generate", {"prompt": "x"}, 404, "model '' not found"),
        ("/api/chat", {"messages": []}, 400, "model is required"),
        ("/api/generate", {"model": "nope", "prompt": "x"}, 404, "model 'nope' not found"),
        ("/api/chat", {"model": "nope"}, 404, "model 'nope' not found"),
        ("/api/generate", {"model": "bad name!", "prompt": "x"}, 400, "invalid model name"),
        ("/api/chat", {"model": "foo:"}, 400, "invalid model name"),
        ("/api/generate", {"model": "nomic-embed-text", "prompt": "x"}, 400, '"nomic-embed-text" does not support generate'),
        ("/api/chat", {"model": "nomic-embed-text", "messages": [{"role": "user", "content": "x"}]}, 400,
         '"nomic-embed-text" does not support chat'),
        ("/api/generate", {"model": "llama3.2", "prompt": "x", "raw": True, "system": "s"}, 400,
         "raw mode does not support template, system, or context"),
        ("/api/generate", {"model": "llama3.2", "prompt": "x", "suffix": "y"}, 400,
         "registry.ollama.ai/library/llama3.2:latest does not support insert"),
        ("/api/generate", {"model": "llama3.2", "prompt": "x", "think": True}, 400, '"llama3.2" does not support thinking'),
        ("/api/chat", {"model": "llama3.2", "messages": [{"role": "user", "content": "x"}], "think": "x"}, 400,
         'invalid think value: "x" (must be "high", "medium", "low", "max", true, or false)'),
        ("/api/generate", {"model": "llama3.2", "prompt": "x", "top_logprobs": 21}, 400, "top_logprobs must be between 0 and 20"),
        ("/api/generate", {"model": "llama3.2", "prompt": "x", "options": {"temperature": "hot"}}, 500,
         'option "temperature" must be of type float32'),
    ],
)
def test_error_catalogue_native(emu, path, body, status, message):
    reply = raw(emu.url, "POST", path, body)
    assert (reply.status, reply.json()) == (status, {"error": message})
    assert reply.content_type == "application/json; charset=utf-8"


def test_old_version_chat_not_found_message(emulator):
    emu = emulator(version="0.11.11")
    reply = raw(emu.url, "POST", "/api/chat", {"model": "nope", "messages": [{"role": "user", "content": "x"}]})
    assert reply.json() == {"error": 'model "nope" not found, try pulling it first'}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("300", 'time: missing unit in duration "300"'),
        ("-1", 'time: missing unit in duration "-1"'),
        ("soon", 'time: invalid duration "soon"'),
        (True, "Unsupported type: 'bool'"),
    ],
)
def test_bad_keep_alive_is_400(emu, value, message):
    reply = raw(emu.url, "POST", "/api/generate", {"model": "llama3.2", "prompt": "x", "keep_alive": value})
    assert (reply.status, reply.json()) == (400, {"error": message})


def test_ollama_client_raises_response_error(emu):
    with pytest.raises(ollama.ResponseError) as caught:
        ollama.Client(host=emu.url).chat(model="missing-model", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 404


def test_format_json_gives_json_text(emu):
    client = ollama.Client(host=emu.url)
    plain = json.loads(client.generate(model="llama3.2", prompt="x", format="json").response)
    assert list(plain) == ["response"] and plain["response"]
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "temp": {"type": "number"},
                                               "sky": {"enum": ["clear", "cloudy"]}}, "required": ["city"]}
    shaped = json.loads(client.chat(model="llama3.2", messages=[{"role": "user", "content": "x"}], format=schema).message.content)
    assert list(shaped) == ["city", "temp", "sky"] and shaped["temp"] == 1.5 and shaped["sky"] == "clear"


def test_openai_response_format(emu):
    sdk = openai.OpenAI(base_url=emu.url + "/v1", api_key="x", max_retries=0)
    reply = sdk.chat.completions.create(
        model="llama3.2", messages=[{"role": "user", "content": "x"}], response_format={"type": "json_object"}
    )
    assert "response" in json.loads(reply.choices[0].message.content)
