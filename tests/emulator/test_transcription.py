"""POST /v1/audio/transcriptions through the openai SDK and raw multipart bodies
(docs/ollama-wire-2026.md §5)."""

from __future__ import annotations

import openai
import pytest

from tests.emulator.conftest import raw

AUDIO = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(64))
BOUNDARY = "XyZ"


def client(emu) -> openai.OpenAI:
    return openai.OpenAI(base_url=emu.url + "/v1", api_key="ignored", max_retries=0)


def multipart(fields: dict[str, str], files: dict[str, bytes]) -> tuple[bytes, dict[str, str]]:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts += [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="a.wav"\r\n'
        f"Content-Type: audio/wav\r\n\r\n".encode() + data + b"\r\n"
        for name, data in files.items()
    ]
    body = b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


@pytest.fixture
def emu(emulator):
    return emulator(models=["llama3.2"], audio_models=["gemma3n:e4b"], response_tokens=8)


def test_audio_models_are_listed_with_the_capability(emu):
    models = {m["name"]: m for m in raw(emu.url, "GET", "/api/tags").json()["models"]}
    assert models["gemma3n:e4b"]["capabilities"][-1] == "audio"
    assert "audio" not in models["llama3.2:latest"]["capabilities"]


def test_transcript_via_sdk_depends_on_the_audio(emu):
    first = client(emu).audio.transcriptions.create(model="gemma3n:e4b", file=("a.wav", AUDIO))
    again = client(emu).audio.transcriptions.create(model="gemma3n:e4b", file=("b.wav", AUDIO))
    other = client(emu).audio.transcriptions.create(model="gemma3n:e4b", file=("a.wav", AUDIO + b"!"))
    assert first.text and first.text == again.text != other.text
    text = client(emu).audio.transcriptions.create(model="gemma3n:e4b", file=("a.wav", AUDIO), response_format="text")
    assert text == first.text


def test_wire_format_follows_the_committed_chat_stream(emu):
    body, headers = multipart({"model": "gemma3n:e4b", "language": "en", "prompt": "weather"}, {"file": AUDIO})
    reply = raw(emu.url, "POST", "/v1/audio/transcriptions", body, headers)
    assert reply.status == 200 and reply.content_type == "application/x-ndjson"
    assert reply.body.startswith(b'{"text":"') and reply.body.endswith(b'"}\n')
    assert reply.json()["text"] == reply.json()["text"].strip() != ""
    body, headers = multipart({"model": "gemma3n:e4b", "response_format": "text"}, {"file": AUDIO})
    text = raw(emu.url, "POST", "/v1/audio/transcriptions", body, headers)
    assert not text.body.startswith(b"{") and not text.body.endswith(b"\n")
    assert emu.stats()["by_model"] == {"gemma3n:e4b": 2}


@pytest.mark.parametrize(("fields", "files", "message"), [
    ({}, {"file": AUDIO}, "model is required"),
    ({"model": "gemma3n:e4b"}, {}, "file is required: http: no such file"),
    ({"model": "gemma3n:e4b"}, {"file": b""}, "audio file is empty"),
])
def test_form_errors(emu, fields, files, message):
    body, headers = multipart(fields, files)
    reply = raw(emu.url, "POST", "/v1/audio/transcriptions", body, headers)
    assert reply.status == 400 and reply.content_type == "application/json; charset=utf-8"
    assert reply.json() == {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}


def test_not_multipart(emu):
    for headers, message in (
        ({"Content-Type": "application/json"}, "request Content-Type isn't multipart/form-data"),
        ({"Content-Type": "multipart/form-data"}, "no multipart boundary param in Content-Type"),
    ):
        reply = raw(emu.url, "POST", "/v1/audio/transcriptions", b'{"model":"gemma3n:e4b"}', headers)
        assert reply.status == 400 and reply.json()["error"]["message"] == "failed to parse multipart form: " + message


def test_model_errors_come_from_the_chat_handler(emu):
    for model, status, message in (
        ("nope", 404, "model 'nope' not found"),
        ("llama3.2", 400, "audio input is not supported by this model"),
    ):
        body, headers = multipart({"model": model}, {"file": AUDIO})
        reply = raw(emu.url, "POST", "/v1/audio/transcriptions", body, headers)
        assert reply.status == status and reply.content_type == "application/json" and reply.body.endswith(b"\n")
        assert reply.json()["error"]["message"] == message


def test_a_cut_generation_leaves_an_empty_200(emu):
    emu.add_fault("cut", after_tokens=3, path="/v1/audio/transcriptions")
    body, headers = multipart({"model": "gemma3n:e4b"}, {"file": AUDIO})
    reply = raw(emu.url, "POST", "/v1/audio/transcriptions", body, headers)
    assert (reply.status, reply.body) == (200, b"")


def test_cloud_names_are_proxied_by_the_chat_handler(emulator):
    emu = emulator(no_cloud=True)
    body, headers = multipart({"model": "gpt-oss:120b-cloud"}, {"file": AUDIO})
    reply = raw(emu.url, "POST", "/v1/audio/transcriptions", body, headers)
    assert reply.status == 403 and reply.json()["error"] == {
        "message": "ollama cloud is disabled: remote model is unavailable", "type": "api_error", "param": None, "code": None,
    }
    assert emu.stats()["cloud_requests"] == 1
