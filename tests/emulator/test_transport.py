"""Transport conventions: liveness, version, routing bodies, framing, content types (1.2-1.4, 3, 8.1)."""

from __future__ import annotations

import ollama

from tests.emulator.conftest import raw


def test_root_says_ollama_is_running(emu):
    reply = raw(emu.url, "GET", "/")
    assert (reply.status, reply.body) == (200, b"Ollama is running")
    assert reply.content_type == "text/plain; charset=utf-8"


def test_head_root_has_headers_and_no_body(emu):
    reply = raw(emu.url, "HEAD", "/")
    assert reply.status == 200 and reply.body == b""
    assert reply.content_type == "text/plain; charset=utf-8"


def test_version_reports_configured_version(emulator):
    emu = emulator(version="0.12.6")
    reply = raw(emu.url, "GET", "/api/version")
    assert reply.body == b'{"version":"0.12.6"}'
    assert reply.content_type == "application/json; charset=utf-8"
    assert ollama.Client(host=emu.url).ps() is not None  # the client accepts the emulator


def test_unknown_path_is_gin_404(emu):
    reply = raw(emu.url, "GET", "/api/nope")
    assert (reply.status, reply.body, reply.content_type) == (404, b"404 page not found", "text/plain")


def test_wrong_method_is_gin_405_with_allow(emu):
    reply = raw(emu.url, "GET", "/api/chat")
    assert (reply.status, reply.body, reply.content_type) == (405, b"405 method not allowed", "text/plain")
    assert reply.headers["Allow"] == "POST"


def test_head_on_ps_is_not_allowed(emu):
    assert raw(emu.url, "HEAD", "/api/ps").status == 405


def test_trailing_slash_redirects(emu):
    get = raw(emu.url, "GET", "/api/tags/")
    post = raw(emu.url, "POST", "/api/chat/", b"{}")
    assert (get.status, get.headers["Location"]) == (301, "/api/tags")
    assert (post.status, post.headers["Location"]) == (307, "/api/chat")


def test_empty_body_is_missing_request_body(emu):
    for path in ("/api/generate", "/api/chat", "/api/embed", "/api/show", "/api/pull"):
        reply = raw(emu.url, "POST", path, b"")
        assert (reply.status, reply.body) == (400, b'{"error":"missing request body"}'), path


def test_empty_body_on_openai_is_enveloped(emu):
    reply = raw(emu.url, "POST", "/v1/chat/completions", b"")
    assert reply.status == 400
    assert reply.body == (
        b'{"error":{"message":"missing request body","type":"invalid_request_error","param":null,"code":null}}\n'
    )
    assert reply.content_type == "application/json"


def test_malformed_json_gets_go_error_text(emu):
    cases = {
        b"x": "invalid character 'x' looking for beginning of value",
        b'{"model":}': "invalid character '}' looking for beginning of value",
        b'{"model" "x"}': "invalid character '\"' after object key",
        b'{"model":"x" "y"}': "invalid character '\"' after object key:value pair",
        b'{"model":"x"': "unexpected EOF",
        b"{'model':1}": "invalid character '\\'' looking for beginning of object key string",
    }
    for body, message in cases.items():
        reply = raw(emu.url, "POST", "/api/generate", body)
        assert reply.status == 400, body
        assert reply.json() == {"error": message}, body


def test_wrong_field_type_names_the_go_struct(emu):
    reply = raw(emu.url, "POST", "/api/generate", {"model": 5})
    assert reply.json() == {
        "error": "json: cannot unmarshal number into Go struct field GenerateRequest.model of type string"
    }
    reply = raw(emu.url, "POST", "/api/chat", b"[]")
    assert reply.json() == {"error": "json: cannot unmarshal array into Go value of type api.ChatRequest"}


def test_content_type_is_not_checked(emu):
    reply = raw(
        emu.url, "POST", "/api/generate", {"model": "llama3.2", "prompt": "hi", "stream": False},
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert reply.status == 200


def test_native_json_has_no_trailing_newline_openai_has_one(emu):
    native = raw(emu.url, "POST", "/api/chat", {
        "model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": False,
    })
    openai = raw(emu.url, "POST", "/v1/chat/completions", {
        "model": "llama3.2", "messages": [{"role": "user", "content": "hi"}],
    })
    assert native.body.endswith(b"}") and native.content_type == "application/json; charset=utf-8"
    assert openai.body.endswith(b"}\n") and openai.content_type == "application/json"


def test_no_extra_headers(emu):
    reply = raw(emu.url, "GET", "/api/tags")
    for header in ("Cache-Control", "X-Accel-Buffering", "Access-Control-Allow-Origin"):
        assert header not in reply.headers


def test_foreign_host_header_is_forbidden_on_loopback(emu):
    assert raw(emu.url, "GET", "/", headers={"Host": "evil.example.com"}).status == 403
    assert raw(emu.url, "POST", "/api/chat", b"{}", headers={"Host": "evil.example.com"}).body == b""


def test_local_host_headers_are_allowed(emu):
    for host in ("localhost:11434", "127.0.0.1:11434", "localhost", "box.local", "10.0.0.7", "[::1]:11434"):
        assert raw(emu.url, "GET", "/", headers={"Host": host}).status == 200, host


def test_host_check_off_on_request(emulator):
    emu = emulator(check_host=False)
    assert raw(emu.url, "GET", "/", headers={"Host": "evil.example.com"}).status == 200
