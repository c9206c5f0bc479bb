"""CORS as Ollama configures it, and OPTIONS handling (8.1, 8.2)."""

from __future__ import annotations

from router.emulator.cors import ALLOW_HEADERS
from tests.emulator.conftest import raw


def test_builtin_origin_gets_allow_origin_and_vary(emu):
    reply = raw(emu.url, "GET", "/api/tags", headers={"Origin": "http://localhost:3000"})
    assert reply.status == 200
    assert reply.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert reply.headers["Vary"] == "Origin"


def test_streamed_responses_carry_cors_headers(emu):
    reply = raw(emu.url, "POST", "/api/generate", {"model": "llama3.2", "prompt": "x"},
                headers={"Origin": "vscode-webview://abc"})
    assert reply.headers["Access-Control-Allow-Origin"] == "vscode-webview://abc"


def test_disallowed_origin_is_403_empty(emu):
    for method, path in (("GET", "/api/tags"), ("POST", "/api/chat"), ("OPTIONS", "/api/chat")):
        reply = raw(emu.url, method, path, b"{}", headers={"Origin": "https://evil.example"})
        assert (reply.status, reply.body) == (403, b""), (method, path)


def test_no_origin_is_not_cors(emu):
    assert "Access-Control-Allow-Origin" not in raw(emu.url, "GET", "/api/tags").headers


def test_same_origin_is_not_cors(emu):
    host = f"127.0.0.1:{emu.port}"
    reply = raw(emu.url, "GET", "/", headers={"Origin": f"http://{host}", "Host": host})
    assert reply.status == 200 and "Access-Control-Allow-Origin" not in reply.headers


def test_preflight(emu):
    reply = raw(emu.url, "OPTIONS", "/v1/chat/completions", headers={
        "Origin": "http://127.0.0.1:8080", "Access-Control-Request-Method": "POST",
    })
    assert reply.status == 204
    assert reply.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:8080"
    assert reply.headers["Access-Control-Allow-Methods"] == "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"
    assert reply.headers["Access-Control-Allow-Headers"] == ALLOW_HEADERS
    assert reply.headers["Access-Control-Max-Age"] == "43200"
    assert reply.headers.get_all("Vary") == ["Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers"]
    assert "Access-Control-Allow-Credentials" not in reply.headers


def test_extra_origins_with_wildcards(emulator):
    emu = emulator(origins=["https://*.example.com"])
    assert raw(emu.url, "GET", "/", headers={"Origin": "https://app.example.com"}).status == 200
    assert raw(emu.url, "GET", "/", headers={"Origin": "https://example.org"}).status == 403


def test_allow_all_origins(emulator):
    emu = emulator(origins=["*"])
    reply = raw(emu.url, "GET", "/", headers={"Origin": "https://anything.example"})
    assert reply.headers["Access-Control-Allow-Origin"] == "*" and "Vary" not in reply.headers


def test_options_without_origin(emulator):
    emu = emulator()
    assert raw(emu.url, "OPTIONS", "/api/chat", headers={"Host": "localhost"}).status == 204
    assert raw(emu.url, "OPTIONS", "/api/chat", headers={"Host": "127.0.0.1"}).status == 405
