"""Model lifecycle: load/unload mode, keep-alive, idle timers, /api/ps, eviction (4.4, 5.4, 6.4, 7.1-7.3)."""

from __future__ import annotations

import time
from datetime import datetime

import ollama

from tests.emulator.conftest import raw, wait_until


def ps(emu) -> list[dict]:
    return raw(emu.url, "GET", "/api/ps").json()["models"]


def expires_in(entry: dict) -> float:
    return datetime.fromisoformat(entry["expires_at"].replace("Z", "+00:00")).timestamp() - time.time()


def test_empty_prompt_loads_the_model(emu):
    reply = raw(emu.url, "POST", "/api/generate", {"model": "llama3.2"})
    assert reply.json() == {
        "model": "llama3.2", "created_at": reply.json()["created_at"], "response": "", "done": True, "done_reason": "load",
    }
    assert reply.content_type == "application/json; charset=utf-8"
    assert [m["name"] for m in ps(emu)] == ["llama3.2:latest"]
    assert emu.stats()["loads"] == 1


def test_empty_chat_loads_and_keep_alive_zero_unloads(emu):
    loaded = raw(emu.url, "POST", "/api/chat", {"model": "llama3.2", "messages": []}).json()
    assert loaded["message"] == {"role": "assistant", "content": ""} and loaded["done_reason"] == "load"
    unloaded = raw(emu.url, "POST", "/api/chat", {"model": "llama3.2", "keep_alive": 0}).json()
    assert list(unloaded) == ["model", "created_at", "message", "done", "done_reason"]
    assert unloaded["done_reason"] == "unload"
    assert ps(emu) == [] and emu.stats()["unloads"] == 1


def test_unload_of_a_model_not_loaded_is_still_200(emu):
    reply = raw(emu.url, "POST", "/api/generate", {"model": "llama3.2", "keep_alive": "0s"})
    assert reply.status == 200 and reply.json()["done_reason"] == "unload"
    assert emu.stats()["loads"] == 0


def test_unload_of_unknown_model_is_404(emu):
    reply = raw(emu.url, "POST", "/api/generate", {"model": "ghost", "keep_alive": 0})
    assert reply.status == 404


def test_half_second_keep_alive_is_not_an_unload(emu):
    reply = raw(emu.url, "POST", "/api/generate", {"model": "llama3.2", "keep_alive": "500ms"})
    assert reply.json()["done_reason"] == "load"


def test_keep_alive_zero_on_a_request_unloads_after_it(emu):
    ollama.Client(host=emu.url).generate(model="llama3.2", prompt="x", keep_alive=0)
    assert ps(emu) == []


def test_idle_timer_unloads(emu):
    ollama.Client(host=emu.url).generate(model="llama3.2", prompt="x", keep_alive="200ms")
    assert len(ps(emu)) == 1
    wait_until(lambda: ps(emu) == [])
    assert emu.stats()["unloads"] == 1


def test_default_keep_alive_comes_from_config(emulator):
    emu = emulator(keep_alive="1m")
    ollama.Client(host=emu.url).generate(model="llama3.2", prompt="x")
    assert 50 < expires_in(ps(emu)[0]) <= 60


def test_keep_alive_is_sticky(emu):
    client = ollama.Client(host=emu.url)
    client.generate(model="llama3.2", prompt="x", keep_alive="1h")
    client.generate(model="llama3.2", prompt="y")  # no keep_alive: keeps 1h
    client.chat(model="llama3.2", messages=[{"role": "user", "content": "z"}])
    assert 3500 < expires_in(ps(emu)[0]) <= 3600


def test_openai_requests_do_not_reset_keep_alive(emu):
    client = ollama.Client(host=emu.url)
    client.generate(model="llama3.2", prompt="x", keep_alive="2h")
    raw(emu.url, "POST", "/v1/chat/completions", {"model": "llama3.2", "messages": [{"role": "user", "content": "x"}]})
    assert 7100 < expires_in(ps(emu)[0]) <= 7200


def test_negative_keep_alive_is_forever(emu):
    ollama.Client(host=emu.url).generate(model="llama3.2", prompt="x", keep_alive=-1)
    assert ps(emu)[0]["expires_at"].startswith(("2318", "2319"))


def test_ps_entry_fields_and_order(emu):
    client = ollama.Client(host=emu.url)
    client.generate(model="llama3.2", keep_alive="10m")
    client.generate(model="qwen2.5:7b", keep_alive="1h")
    client.embed(model="nomic-embed-text", input="x", keep_alive="30m")
    entries = ps(emu)
    assert [e["name"] for e in entries] == ["qwen2.5:7b", "nomic-embed-text:latest", "llama3.2:latest"]
    first = entries[0]
    assert list(first) == [
        "name", "model", "size", "digest", "details", "expires_at", "size_vram", "context_length",
    ]
    assert first["size_vram"] == first["size"] and first["context_length"] == 4096
    assert len(first["digest"]) == 64
    listed = client.ps()
    assert {m.model for m in listed.models} == {e["model"] for e in entries}


def test_eviction_at_max_loaded_models_picks_shortest_keep_alive(emulator):
    emu = emulator(max_loaded_models=2)
    client = ollama.Client(host=emu.url)
    client.generate(model="llama3.2", keep_alive="1h")
    client.generate(model="qwen2.5:7b", keep_alive="5m")
    client.embed(model="nomic-embed-text", input="x")
    assert {e["name"] for e in ps(emu)} == {"llama3.2:latest", "nomic-embed-text:latest"}
    assert emu.stats()["unloads"] == 1 and emu.stats()["loads"] == 3


def test_reload_after_unload_counts_a_new_load(emu):
    client = ollama.Client(host=emu.url)
    client.generate(model="llama3.2", prompt="x", keep_alive=0)
    client.generate(model="llama3.2", prompt="x")
    assert emu.stats()["loads"] == 2


def test_changed_load_options_force_a_reload(emu):
    client = ollama.Client(host=emu.url)
    client.generate(model="llama3.2", prompt="x", options={"num_ctx": 8192})
    assert ps(emu)[0]["context_length"] == 8192
    client.generate(model="llama3.2", prompt="x", options={"num_ctx": 8192, "temperature": 0})
    assert emu.stats()["loads"] == 1  # sampling options do not reload
    client.generate(model="llama3.2", prompt="x")  # default num_ctx again: reload
    assert ps(emu)[0]["context_length"] == 4096
    assert (emu.stats()["loads"], emu.stats()["unloads"]) == (2, 1)


def test_unload_requested_while_busy_waits_for_the_request(emulator):
    import threading

    emu = emulator(tokens_per_second=40, response_tokens=12)
    client = ollama.Client(host=emu.url)
    worker = threading.Thread(target=lambda: client.generate(model="llama3.2", prompt="x"))
    worker.start()
    wait_until(lambda: len(ps(emu)) == 1)
    raw(emu.url, "POST", "/api/generate", {"model": "llama3.2", "keep_alive": 0})
    entries = ps(emu)
    assert len(entries) == 1 and abs(expires_in(entries[0])) < 2  # still there, expiring now
    worker.join()
    assert ps(emu) == []
