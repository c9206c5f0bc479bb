"""/_emulator/stats: what counts (see router/emulator/stats.py)."""

from __future__ import annotations

import ollama

from tests.emulator.conftest import raw


def test_stats_shape_at_start(emu):
    assert emu.stats() == {
        "requests": 0, "in_flight": 0, "cancelled": 0, "loads": 0, "unloads": 0, "cloud_requests": 0, "by_model": {},
    }


def test_model_requests_count_by_display_name(emu):
    client = ollama.Client(host=emu.url)
    client.generate(model="llama3.2")  # a keep-warm style load ping counts
    client.chat(model="LLaMA3.2:latest", messages=[{"role": "user", "content": "x"}])
    client.embed(model="nomic-embed-text", input="x")
    raw(emu.url, "POST", "/v1/chat/completions", {"model": "llama3.2", "messages": [{"role": "user", "content": "x"}]})
    raw(emu.url, "POST", "/api/generate", {"model": "ghost", "prompt": "x"})  # errors count too
    raw(emu.url, "GET", "/api/tags")  # listings do not
    raw(emu.url, "POST", "/api/show", {"model": "llama3.2"})
    stats = emu.stats()
    assert stats["requests"] == 5
    assert stats["by_model"] == {"llama3.2:latest": 3, "nomic-embed-text:latest": 1, "ghost:latest": 1}
    assert stats["loads"] == 2 and stats["in_flight"] == 0
