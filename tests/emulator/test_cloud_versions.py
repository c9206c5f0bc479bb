"""Cloud model names, /api/status, and which routes each emulated release serves
(docs/ollama-wire-2026.md §1, §6, §8)."""

from __future__ import annotations

import re
import subprocess
import sys

import anthropic
import openai
import pytest

from tests.emulator.conftest import raw

CHAT = {"messages": [{"role": "user", "content": "hi"}]}
DISABLED = "ollama cloud is disabled: remote model is unavailable"
DIAL = re.compile(r'^Post "https://ollama\.com:443(/[a-z0-9/_]+)\?ts=\d+": dial tcp: lookup ollama\.com: no such host$')


def test_status_reports_where_cloud_was_disabled(emulator):
    for fields, expected in (
        ({}, {"disabled": False, "source": "none"}),
        ({"no_cloud": True}, {"disabled": True, "source": "config"}),
        ({"no_cloud_env": True}, {"disabled": True, "source": "env"}),
        ({"no_cloud": True, "no_cloud_env": True}, {"disabled": True, "source": "both"}),
    ):
        reply = raw(emulator(**fields).url, "GET", "/api/status")
        assert reply.status == 200 and reply.content_type == "application/json; charset=utf-8"
        assert reply.json() == {"cloud": expected}


def test_ollama_no_cloud_is_read_from_the_environment(emulator):
    emu = emulator(no_cloud_env=True, subprocess=True)
    assert raw(emu.url, "GET", "/api/status").body == b'{"cloud":{"disabled":true,"source":"env"}}'


@pytest.mark.parametrize(("path", "body"), [
    ("/api/chat", {"model": "gpt-oss:120b-cloud", **CHAT}),
    ("/api/generate", {"model": "glm-4.7:cloud", "prompt": "hi"}),
    ("/api/embed", {"model": "embeddinggemma:CLOUD", "input": "hi"}),
    ("/v1/chat/completions", {"model": "gpt-oss:120b-cloud", **CHAT}),
    ("/v1/embeddings", {"model": "x:cloud", "input": "hi"}),
    ("/v1/responses", {"model": "gpt-oss:20b:cloud", "input": "hi"}),
    ("/v1/messages", {"model": "kimi-k2:1t-cloud", "max_tokens": 5, **CHAT}),
])
def test_cloud_names_are_refused_in_the_native_shape_everywhere(emulator, path, body):
    disabled = emulator(no_cloud=True)
    reply = raw(disabled.url, "POST", path, body)
    assert (reply.status, reply.body) == (403, b'{"error":"' + DISABLED.encode() + b'"}')
    assert reply.content_type == "application/json; charset=utf-8"
    offline = emulator()
    reply = raw(offline.url, "POST", path, body)
    assert reply.status == 502 and list(reply.json()) == ["error"]
    assert DIAL.match(reply.json()["error"]).group(1) == path
    for emu in (disabled, offline):
        stats = emu.stats()
        assert stats["cloud_requests"] == 1 and stats["loads"] == 0 and stats["requests"] == 1


def test_cloud_refusals_through_the_sdks(emulator):
    emu = emulator(no_cloud=True)
    with pytest.raises(openai.PermissionDeniedError) as denied:
        openai.OpenAI(base_url=emu.url + "/v1", api_key="x", max_retries=0).chat.completions.create(
            model="gpt-oss:120b-cloud", messages=CHAT["messages"],
        )
    assert denied.value.body == DISABLED  # the SDK unwraps the native {"error": "..."}
    with pytest.raises(anthropic.PermissionDeniedError):
        anthropic.Anthropic(base_url=emu.url, api_key="x", max_retries=0).messages.create(
            model="gpt-oss:120b-cloud", max_tokens=5, messages=CHAT["messages"],
        )
    assert emu.stats()["cloud_requests"] == 2


def test_which_names_are_cloud_names(emulator):
    emu = emulator(no_cloud=True)
    for name in ("llama3.2-cloud", "library/x-cloud:latest-local"):  # no colon / suffix not -cloud
        reply = raw(emu.url, "POST", "/api/chat", {"model": name, **CHAT})
        assert reply.status == 404, name
    conflicting = raw(emu.url, "POST", "/v1/chat/completions", {"model": "x:cloud:local", **CHAT})
    assert conflicting.status != 403  # not a cloud name: the local path reports it
    assert emu.stats()["cloud_requests"] == 0


def test_model_details_of_cloud_names(emulator):
    emu = emulator(no_cloud=True)
    for reply in (raw(emu.url, "POST", "/api/show", {"model": "gpt-oss:120b-cloud"}),
                  raw(emu.url, "GET", "/v1/models/gpt-oss:120b-cloud")):
        assert reply.status == 403
        assert reply.json() == {"error": "ollama cloud is disabled: remote model details are unavailable"}
    reply = raw(emulator().url, "GET", "/v1/models/gpt-oss:120b-cloud")
    assert reply.status == 502 and reply.json()["error"].startswith('Get "https://ollama.com:443/v1/models/gpt-oss:120b?ts=')


def test_server_web_search_keeps_the_compatibility_shape(emulator):
    body = {"model": "gpt-oss:120b-cloud", "max_tokens": 5, **CHAT, "tools": [{"type": "web_search_20250305", "name": "web_search"}]}
    reply = raw(emulator(no_cloud=True).url, "POST", "/v1/messages", body)
    assert reply.status == 403 and reply.json()["error"] == {
        "type": "permission_error", "message": "ollama cloud is disabled: web search is unavailable",
    }
    responses = raw(emulator(no_cloud=True).url, "POST", "/v1/responses", {
        "model": "gpt-oss:120b-cloud", "input": "hi", "tools": [{"type": "web_search"}],
    })
    assert responses.status == 403 and responses.json()["error"]["message"] == DISABLED
    assert responses.json()["error"]["type"] == "api_error"


def test_releases_before_cloud_names_look_them_up_locally(emulator):
    emu = emulator(version="0.16.0", no_cloud=True)
    reply = raw(emu.url, "POST", "/api/chat", {"model": "gpt-oss:120b-cloud", **CHAT})
    assert reply.status == 404 and emu.stats()["cloud_requests"] == 0


def test_default_release_is_the_newest_stable(emu):
    assert raw(emu.url, "GET", "/api/version").json() == {"version": "0.32.15"}
    completed = subprocess.run([sys.executable, "-m", "router.emulator", "--help"], capture_output=True, text=True, check=True)
    assert "default 0.32.15" in completed.stdout


@pytest.mark.parametrize(("version", "served"), [
    ("0.12.6", set()),
    ("0.13.3", {"/v1/responses"}),
    ("0.14.0", {"/v1/responses", "/v1/messages"}),
    ("0.16.2", {"/v1/responses", "/v1/messages", "/api/status"}),
    ("0.20.0", {"/v1/responses", "/v1/messages", "/api/status", "/v1/audio/transcriptions"}),
])
def test_older_releases_do_not_serve_newer_endpoints(emulator, version, served):
    emu = emulator(version=version)
    for path in ("/v1/responses", "/v1/messages", "/api/status", "/v1/audio/transcriptions"):
        method = "GET" if path == "/api/status" else "PUT"  # a wrong method: 405 where the route exists
        reply = raw(emu.url, method, path)
        if path in served:
            assert reply.status == (200 if method == "GET" else 405), (version, path)
        else:
            assert (reply.status, reply.body) == (404, b"404 page not found"), (version, path)


@pytest.mark.parametrize("path", ["/v1/images/generations", "/v1/images/edits", "/v1/messages/count_tokens"])
def test_routes_ollama_serve_does_not_have(emu, path):
    reply = raw(emu.url, "POST", path, {"model": "llama3.2", **CHAT})
    assert (reply.status, reply.body, reply.content_type) == (404, b"404 page not found", "text/plain")
