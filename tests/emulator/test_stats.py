"""/_emulator/stats: what counts (see router/emulator/stats.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import ollama

from tests.emulator.conftest import raw


def test_stats_shape_at_start(emu):
    assert emu.stats() == {
        "requests": 0, "in_flight": 0, "max_in_flight": 0, "cancelled": 0, "loads": 0, "unloads": 0, "cloud_requests": 0, "by_model": {},
        "prompt_tokens_processed": 0, "prompt_tokens_reused": 0, "prompt_tokens_by_model": {},
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


def test_max_in_flight_is_the_high_water_mark(emulator):
    emu = emulator(tokens_per_second=20, response_tokens=6, num_parallel=4)
    chat = {"model": "llama3.2", "messages": [{"role": "user", "content": "x"}], "stream": False}
    with ThreadPoolExecutor(3) as pool:
        replies = list(pool.map(lambda _: raw(emu.url, "POST", "/api/chat", chat), range(3)))
    assert [r.status for r in replies] == [200, 200, 200]
    raw(emu.url, "POST", "/api/chat", chat)  # alone afterwards: the mark stays
    stats = emu.stats()
    assert stats["max_in_flight"] == 3 and stats["in_flight"] == 0
