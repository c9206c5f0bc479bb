"""/api/embed, legacy /api/embeddings and /v1/embeddings (6.1, 6.2, 10.3)."""

from __future__ import annotations

import base64
import math
import struct

import ollama
import openai

from tests.emulator.conftest import raw


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(v * v for v in vector))


def test_embed_returns_deterministic_unit_vectors(emu):
    client = ollama.Client(host=emu.url)
    first = client.embed(model="nomic-embed-text", input=["hello", "world"])
    again = client.embed(model="nomic-embed-text", input=["hello", "world"])
    assert len(first.embeddings) == 2 and len(first.embeddings[0]) == 768
    assert first.embeddings == again.embeddings and first.embeddings[0] != first.embeddings[1]
    assert all(abs(norm(v) - 1) < 1e-6 for v in first.embeddings)
    assert first.prompt_eval_count == 2


def test_embed_reply_fields(emu):
    body = raw(emu.url, "POST", "/api/embed", {"model": "nomic-embed-text", "input": "hi"}).json()
    assert list(body) == ["model", "embeddings", "total_duration", "load_duration", "prompt_eval_count"]


def test_embed_dimensions_cut_and_renormalise(emu):
    body = raw(emu.url, "POST", "/api/embed", {"model": "nomic-embed-text", "input": "hi", "dimensions": 8}).json()
    assert len(body["embeddings"][0]) == 8 and abs(norm(body["embeddings"][0]) - 1) < 1e-6


def test_empty_embed_input_loads(emu):
    reply = raw(emu.url, "POST", "/api/embed", {"model": "nomic-embed-text", "input": []})
    assert reply.json() == {"model": "nomic-embed-text", "embeddings": []}
    assert raw(emu.url, "GET", "/api/ps").json()["models"][0]["name"] == "nomic-embed-text:latest"


def test_embed_errors(emu):
    cases = [
        ({"model": "nomic-embed-text", "input": 5}, 400, "invalid input type"),
        ({"model": "nomic-embed-text", "input": ["a", 1]}, 400, "invalid input type"),
        ({"input": "x"}, 404, "model '' not found"),
        ({"model": "nope", "input": "x"}, 404, 'model "nope" not found, try pulling it first'),
        ({"model": "nomic-embed-text", "input": "x " * 5000, "truncate": False}, 400,
         "the input length exceeds the context length"),
    ]
    for body, status, message in cases:
        reply = raw(emu.url, "POST", "/api/embed", body)
        assert (reply.status, reply.json()) == (status, {"error": message}), body


def test_generative_models_embed_too(emu):
    assert ollama.Client(host=emu.url).embed(model="llama3.2", input="x").embeddings


def test_legacy_embeddings_are_not_normalised(emu):
    body = raw(emu.url, "POST", "/api/embeddings", {"model": "nomic-embed-text", "prompt": "hello"}).json()
    assert list(body) == ["embedding"] and abs(norm(body["embedding"]) - 1) > 0.1
    unit = ollama.Client(host=emu.url).embed(model="nomic-embed-text", input="hello").embeddings[0]
    scale = norm(body["embedding"])
    assert all(abs(a / scale - b) < 1e-9 for a, b in zip(body["embedding"], unit, strict=True))


def test_legacy_embeddings_errors_and_load(emu):
    assert raw(emu.url, "POST", "/api/embeddings", {"prompt": "x"}).json() == {"error": "model is required"}
    assert raw(emu.url, "POST", "/api/embeddings", {"model": "nomic-embed-text"}).json() == {"embedding": []}


def test_openai_embeddings_float_and_base64(emu):
    sdk = openai.OpenAI(base_url=emu.url + "/v1", api_key="x", max_retries=0)
    floats = sdk.embeddings.create(model="nomic-embed-text", input=["a", "b"], encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1] and floats.model == "nomic-embed-text"
    encoded = raw(emu.url, "POST", "/v1/embeddings", {"model": "nomic-embed-text", "input": "a", "encoding_format": "BASE64"})
    data = base64.b64decode(encoded.json()["data"][0]["embedding"])
    decoded = struct.unpack(f"<{len(data) // 4}f", data)
    assert all(abs(a - b) < 1e-6 for a, b in zip(decoded, floats.data[0].embedding, strict=True))
    assert encoded.json()["usage"] == {"prompt_tokens": 1, "total_tokens": 1}
