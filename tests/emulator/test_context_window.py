"""Context windows: the default num_ctx, what reloads a model, and prompts longer than
the window (docs/ollama-wire-2026.md §7)."""

from __future__ import annotations

import argparse

import ollama
import pytest

from router.emulator.command import add_arguments, config_from_args
from router.emulator.window import PROMPT_TOO_LONG, shift_limit
from tests.emulator.conftest import raw

LONG = "word " * 300  # 300 prompt tokens


def ps(emu) -> list[dict]:
    return raw(emu.url, "GET", "/api/ps").json()["models"]


def loaded_context(emu, model: str = "llama3.2", **fields) -> int:
    raw(emu.url, "POST", "/api/generate", {"model": model, **fields})
    return ps(emu)[0]["context_length"]


@pytest.mark.parametrize(("fields", "expected"), [
    ({}, 4096),  # a CPU-only box
    ({"vram_gib": 22.9}, 4096),
    ({"vram_gib": 23}, 32768),
    ({"vram_gib": 47}, 131072),  # 262144, capped at what llama3.2 was trained for
    ({"vram_gib": 80, "context_length": 8192}, 8192),  # OLLAMA_CONTEXT_LENGTH wins over the tier
    ({"vram_gib": 80, "version": "0.15.4"}, 4096),  # before the VRAM tiers
])
def test_default_num_ctx(emulator, fields, expected):
    assert loaded_context(emulator(**fields)) == expected


def test_cli_reads_ollama_context_length_and_the_flags(monkeypatch):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    monkeypatch.setenv("OLLAMA_CONTEXT_LENGTH", "2048")
    monkeypatch.setenv("OLLAMA_NO_CLOUD", "yes please")  # Go's ParseBool fails: that counts as true
    config = config_from_args(parser.parse_args(["--vram-gib", "24", "--audio-model", "gemma3n", "--no-cloud"]))
    assert (config.context_length, config.vram_gib, config.audio_models) == (2048, 24.0, ["gemma3n"])
    assert (config.no_cloud, config.no_cloud_env) == (True, True)
    monkeypatch.setenv("OLLAMA_NO_CLOUD", "false")
    config = config_from_args(parser.parse_args(["--context-length", "0"]))
    assert (config.context_length, config.no_cloud, config.no_cloud_env) == (0, False, False)


def test_flags_reach_a_subprocess_emulator(emulator):
    emu = emulator(subprocess=True, vram_gib=24)
    assert loaded_context(emu) == 32768
    emu = emulator(subprocess=True, context_length=6000)
    assert loaded_context(emu) == 6000


def test_explicit_num_ctx_is_floored_and_capped(emu):
    assert loaded_context(emu, options={"num_ctx": 1}) == 4
    assert loaded_context(emu, options={"num_ctx": 10**7}) == 131072


def test_num_ctx_changes_reload_and_show_in_load_duration(emulator):
    emu = emulator(load_time=0.2)
    client = ollama.Client(host=emu.url)
    cold = client.generate(model="llama3.2", prompt="x")
    warm = client.generate(model="llama3.2", prompt="x", options={"num_ctx": 4096})  # same value: no reload
    assert emu.stats()["loads"] == 1 and warm.load_duration < cold.load_duration / 2
    reloaded = client.generate(model="llama3.2", prompt="x", options={"num_ctx": 8192})
    assert emu.stats()["loads"] == 2 and reloaded.load_duration >= 0.2e9
    assert ps(emu)[0]["context_length"] == 8192
    client.chat(model="llama3.2", messages=[{"role": "user", "content": "x"}])  # back to the default: reload
    assert (emu.stats()["loads"], emu.stats()["unloads"]) == (3, 2)


def test_shift_toggle_reloads(emu):
    client = ollama.Client(host=emu.url)
    client.generate(model="llama3.2", prompt="x")
    raw(emu.url, "POST", "/api/generate", {"model": "llama3.2", "prompt": "x", "shift": True, "stream": False})
    assert emu.stats()["loads"] == 1  # true is the default
    raw(emu.url, "POST", "/api/generate", {"model": "llama3.2", "prompt": "x", "shift": False, "stream": False})
    assert emu.stats()["loads"] == 2
    raw(emu.url, "POST", "/api/chat", {"model": "llama3.2", "messages": [], "shift": False})  # a load request
    assert emu.stats()["loads"] == 2


def test_shift_does_not_reload_before_0_30(emulator):
    emu = emulator(version="0.29.0")
    raw(emu.url, "POST", "/api/generate", {"model": "llama3.2", "prompt": "x", "stream": False})
    raw(emu.url, "POST", "/api/generate", {"model": "llama3.2", "prompt": "x", "shift": False, "stream": False})
    assert emu.stats()["loads"] == 1


def test_long_prompt_is_cut_silently_with_shift_on(emu):
    reply = raw(emu.url, "POST", "/api/generate", {
        "model": "llama3.2", "prompt": LONG, "stream": False, "options": {"num_ctx": 256},
    })
    assert reply.status == 200 and reply.json()["prompt_eval_count"] == shift_limit(256) == 131


def test_long_prompt_is_refused_with_shift_off(emu):
    for path, body in (
        ("/api/generate", {"prompt": LONG}),
        ("/api/chat", {"messages": [{"role": "user", "content": LONG}]}),
    ):
        reply = raw(emu.url, "POST", path, {"model": "llama3.2", "shift": False, "options": {"num_ctx": 256}, **body})
        assert (reply.status, reply.json()) == (400, {"error": PROMPT_TOO_LONG}), path
    assert emu.stats()["loads"] == 1  # refused by the loaded runner, as Ollama does


def test_chat_drops_old_messages_before_refusing(emu):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": LONG},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "Short question?"},
    ]
    reply = raw(emu.url, "POST", "/api/chat", {
        "model": "llama3.2", "messages": messages, "shift": False, "stream": False, "options": {"num_ctx": 256},
    })
    assert reply.status == 200 and reply.json()["prompt_eval_count"] < 40


def test_deepseek2_cannot_shift_so_every_api_refuses_in_its_shape(emulator):
    emu = emulator(models=["deepseek-v3"], context_length=256)
    chat = raw(emu.url, "POST", "/v1/chat/completions", {"model": "deepseek-v3", "messages": [{"role": "user", "content": LONG}]})
    assert chat.status == 400 and chat.json()["error"] == {
        "message": PROMPT_TOO_LONG, "type": "invalid_request_error", "param": None, "code": None,
    }
    responses = raw(emu.url, "POST", "/v1/responses", {"model": "deepseek-v3", "input": LONG, "stream": True})
    assert responses.status == 400 and responses.json()["error"]["message"] == PROMPT_TOO_LONG
    messages = raw(emu.url, "POST", "/v1/messages", {
        "model": "deepseek-v3", "max_tokens": 10, "messages": [{"role": "user", "content": LONG}],
    })
    assert messages.status == 400 and messages.json()["error"] == {"type": "invalid_request_error", "message": PROMPT_TOO_LONG}
    native = raw(emu.url, "POST", "/api/chat", {
        "model": "deepseek-v3", "messages": [{"role": "user", "content": LONG}], "shift": True, "stream": False,
    })
    assert native.status == 200  # asking for a shift works, at the price of a reload
    assert emu.stats()["loads"] == 2


def test_refusal_before_0_30_9_is_a_cut_instead(emulator):
    emu = emulator(version="0.30.8")
    reply = raw(emu.url, "POST", "/api/generate", {
        "model": "llama3.2", "prompt": LONG, "shift": False, "stream": False, "options": {"num_ctx": 256},
    })
    assert reply.status == 200 and reply.json()["prompt_eval_count"] == 131


def test_embeddings_over_the_window(emulator):
    emu = emulator(context_length=64)
    refused = raw(emu.url, "POST", "/api/embed", {"model": "nomic-embed-text", "input": ["short", LONG], "truncate": False})
    assert (refused.status, refused.json()) == (400, {"error": "the input length exceeds the context length"})
    cut = raw(emu.url, "POST", "/api/embed", {"model": "nomic-embed-text", "input": ["short", LONG]})
    assert cut.status == 200 and cut.json()["prompt_eval_count"] == 1 + 62
