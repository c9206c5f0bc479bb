"""/api/tags, /api/show, /api/pull, /api/delete (6.3, 6.5-6.7)."""

from __future__ import annotations

import json

import ollama
import pytest

from tests.emulator.conftest import raw


def test_tags_lists_installed_models_newest_first(emu):
    reply = raw(emu.url, "GET", "/api/tags")
    assert reply.content_type == "application/json; charset=utf-8"
    models = reply.json()["models"]
    assert [m["name"] for m in models] == ["llama3.2:latest", "qwen2.5:7b", "nomic-embed-text:latest"]
    first = models[0]
    assert list(first) == ["name", "model", "modified_at", "size", "digest", "details", "capabilities"]
    assert first["name"] == first["model"] and len(first["digest"]) == 64
    assert models[1]["details"]["parameter_size"] == "7B"
    assert models[2]["capabilities"] == ["embedding"]
    assert [m.model for m in ollama.Client(host=emu.url).list().models] == [m["model"] for m in models]


def test_tags_is_empty_list_not_null(emulator):
    emu = emulator(models=[], embedding_models=[])
    assert raw(emu.url, "GET", "/api/tags").body == b'{"models":[]}'


def test_old_versions_omit_capabilities(emulator):
    emu = emulator(version="0.12.6")
    entry = raw(emu.url, "GET", "/api/tags").json()["models"][0]
    assert "capabilities" not in entry and "context_length" not in entry["details"]


def test_show_known_model(emu):
    shown = ollama.Client(host=emu.url).show("LLaMA3.2")
    assert shown.capabilities == ["completion", "tools"]
    assert shown.modelinfo["general.architecture"] == "llama"
    body = raw(emu.url, "POST", "/api/show", {"model": "llama3.2"}).json()
    assert "model_info" in body and list(body)[:2] == ["license", "modelfile"]


def test_show_errors(emu):
    assert raw(emu.url, "POST", "/api/show", {}).json() == {"error": "model is required"}
    missing = raw(emu.url, "POST", "/api/show", {"model": "foo"})
    assert (missing.status, missing.json()) == (404, {"error": "model 'foo:latest' not found"})
    assert raw(emu.url, "POST", "/api/show", {"name": "a//b"}).json() == {"error": "invalid model name"}


def test_pull_streams_progress_then_installs(emulator):
    emu = emulator(pull_time=0.3)
    reply = raw(emu.url, "POST", "/api/pull", {"model": "mistral"})
    assert reply.content_type == "application/x-ndjson"
    lines = reply.lines()
    statuses = [line["status"] for line in lines]
    assert statuses[0] == "pulling manifest" and statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    progress = [line for line in lines if line.get("digest") == lines[1]["digest"]]
    assert len(progress) > 2 and "completed" not in progress[0]
    assert progress[-1]["completed"] == progress[-1]["total"]
    assert lines[1]["status"] == "pulling " + lines[1]["digest"][len("sha256:"):][:12]
    assert "mistral:latest" in [m.model for m in ollama.Client(host=emu.url).list().models]


def test_pull_via_client_non_streamed(emulator):
    emu = emulator(pull_time=0.1)
    assert ollama.Client(host=emu.url).pull("tinyllama").status == "success"
    reply = raw(emu.url, "POST", "/api/pull", {"model": "tinyllama", "stream": False})
    assert (reply.body, reply.content_type) == (b'{"status":"success"}', "application/json")


def test_no_pull_fails_like_unknown_manifest(emulator):
    emu = emulator(allow_pull=False)
    streamed = raw(emu.url, "POST", "/api/pull", {"model": "mistral"})
    assert streamed.status == 200
    assert streamed.lines() == [{"status": "pulling manifest"}, {"error": "pull model manifest: file does not exist"}]
    whole = raw(emu.url, "POST", "/api/pull", {"model": "mistral", "stream": False})
    assert (whole.status, whole.json()) == (500, {"error": "pull model manifest: file does not exist"})
    with pytest.raises(ollama.ResponseError):
        ollama.Client(host=emu.url).pull("mistral")


def test_pull_invalid_name(emu):
    for body in ({}, {"model": "bad name"}):
        reply = raw(emu.url, "POST", "/api/pull", body)
        assert (reply.status, reply.json()) == (400, {"error": "invalid model name"})


def test_delete_removes_a_model(emu):
    assert raw(emu.url, "DELETE", "/api/delete", json.dumps({"model": "qwen2.5:7b"}).encode()).status == 200
    assert "qwen2.5:7b" not in [m["name"] for m in raw(emu.url, "GET", "/api/tags").json()["models"]]
    missing = raw(emu.url, "DELETE", "/api/delete", {"model": "qwen2.5:7b"})
    assert (missing.status, missing.json()) == (404, {"error": "model 'qwen2.5:7b' not found"})


def test_copy_installs_the_destination(emu):
    assert raw(emu.url, "POST", "/api/copy", {"source": "llama3.2", "destination": "my/llama:v1"}).status == 200
    names = [m["name"] for m in raw(emu.url, "GET", "/api/tags").json()["models"]]
    assert "my/llama:v1" in names
    missing = raw(emu.url, "POST", "/api/copy", {"source": "ghost", "destination": "x"})
    assert (missing.status, missing.json()) == (404, {"error": 'model "ghost" not found'})
    invalid = raw(emu.url, "POST", "/api/copy", {"source": "llama3.2", "destination": "a//b"})
    assert invalid.json() == {"error": 'destination "a//b" is invalid'}


def test_namespaced_model_is_unreachable_on_v1_models_path(emu):
    raw(emu.url, "POST", "/api/copy", {"source": "llama3.2", "destination": "user/model"})
    reply = raw(emu.url, "GET", "/v1/models/user/model")
    assert (reply.status, reply.body) == (404, b"404 page not found")
    owned = raw(emu.url, "GET", "/v1/models").json()["data"]
    assert {"id": "user/model:latest", "owned_by": "user"}.items() <= next(m for m in owned if m["id"] == "user/model:latest").items()
