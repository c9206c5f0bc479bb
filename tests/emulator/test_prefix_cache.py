"""Slot prompt caches, prompt-processing rate and decode slowdown (router/emulator/README.md).

Every assertion reads what a client or an operator sees: Ollama's reported
prompt_eval_count / prompt_eval_duration / eval_count / eval_duration, the
OpenAI usage, and /_emulator/stats. Durations are the modelled GPU time the
emulator reports, never the wall clock.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass, field
from typing import Any

import ollama
import openai
import pytest

from router.emulator.command import add_arguments, config_from_args
from router.emulator.config import EmulatorConfig
from router.emulator.throughput import DEFAULT_DECODE_SCALING
from tests.emulator.conftest import raw
from tests.emulator.support import Measured, kept, measured, words
from tests.emulators import EmulatorHandle

MODEL = "llama3.2"
OTHER = "qwen2.5:7b"
HEADER = 3  # `START system SEP`: all that two chats with different system prompts share


@dataclass
class Conversation:
    """A chat resent in full every turn, as chat UIs and coding agents do."""

    emu: EmulatorHandle
    system: str = ""
    model: str = MODEL
    messages: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = ollama.Client(host=self.emu.url)
        if self.system:
            self.messages.append({"role": "system", "content": self.system})

    def say(self, text: str, **options: Any) -> Measured:
        self.messages.append({"role": "user", "content": text})
        turn = measured(self.emu, lambda: self.client.chat(model=self.model, messages=self.messages, **options))
        self.messages.append({"role": "assistant", "content": turn.reply.message.content})
        return turn


# -- reuse across turns ------------------------------------------------------------


def test_second_turn_processes_only_the_new_part(emulator):
    emu = emulator()
    chat = Conversation(emu, system=words("rules", 60))
    first = chat.say(words("question", 20))
    assert first.reused == 0
    assert first.reply.prompt_eval_count == first.processed == 4 + 60 + 4 + 20 + 3  # the rendered chat

    second = chat.say(words("followup", 10))
    # The slot still holds turn 1's prompt and answer: only the answer's end marker,
    # the new user message and the answer header are evaluated.
    assert second.reused == kept(first)
    assert second.reply.prompt_eval_count == second.processed == 1 + (4 + 10) + 3
    third = chat.say(words("more", 5))
    assert third.reused == kept(second) and third.reply.prompt_eval_count == 1 + (4 + 5) + 3

    stats = emu.stats()
    assert stats["prompt_tokens_by_model"] == {
        "llama3.2:latest": {
            "prompt_tokens_processed": first.processed + second.processed + third.processed,
            "prompt_tokens_reused": second.reused + third.reused,
        }
    }
    assert stats["prompt_tokens_processed"] == first.processed + second.processed + third.processed


def test_openai_client_second_turn_usage_counts_only_processed_tokens(emulator):
    emu = emulator()
    client = openai.OpenAI(base_url=emu.url + "/v1", api_key="unused")
    messages: list[Any] = [
        {"role": "system", "content": words("persona", 50)},
        {"role": "user", "content": words("ask", 30)},
    ]
    first = measured(emu, lambda: client.chat.completions.create(model=MODEL, messages=messages))
    assert first.reused == 0 and first.reply.usage.prompt_tokens == first.processed == 4 + 50 + 4 + 30 + 3
    messages += [
        {"role": "assistant", "content": first.reply.choices[0].message.content},
        {"role": "user", "content": words("next", 6)},
    ]
    second = measured(emu, lambda: client.chat.completions.create(model=MODEL, messages=messages))
    # Ollama's usage.prompt_tokens is its prompt_eval_count: the tokens evaluated.
    assert second.reused == first.processed + first.reply.usage.completion_tokens
    assert second.reply.usage.prompt_tokens == second.processed == 1 + (4 + 6) + 3


def test_the_same_prompt_again_evaluates_only_its_last_token(emulator):
    emu = emulator()
    client = ollama.Client(host=emu.url)
    messages = [{"role": "user", "content": words("same", 40)}]
    first = client.chat(model=MODEL, messages=messages)
    again = client.chat(model=MODEL, messages=messages)
    assert again.message.content == first.message.content
    assert (first.prompt_eval_count, again.prompt_eval_count) == (4 + 40 + 3, 1)


def test_each_model_has_its_own_slots(emulator):
    emu = emulator()
    on_llama = Conversation(emu, system=words("shared", 40))
    on_qwen = Conversation(emu, system=words("shared", 40), model=OTHER)
    first = on_llama.say(words("hello", 5))
    other = on_qwen.say(words("hello", 5))
    assert other.reused == 0  # the same text on another model: nothing cached there
    assert on_llama.say(words("again", 3)).reused == kept(first)
    assert set(emu.stats()["prompt_tokens_by_model"]) == {"llama3.2:latest", "qwen2.5:7b"}


# -- which slot a request takes ------------------------------------------------------------


def test_an_unrelated_prompt_takes_the_least_recently_used_slot(emulator):
    emu = emulator(num_parallel=2)
    a, b = Conversation(emu, system=words("alpha", 30)), Conversation(emu, system=words("beta", 30))
    a1 = a.say(words("qa", 10))
    b1 = b.say(words("qb", 10))  # A's slot holds too little of this prompt: the unused slot
    assert b1.reused == 0
    unrelated = Conversation(emu, system=words("gamma", 50)).say(words("qc", 10))
    assert unrelated.reused == HEADER  # it went to A's slot, used before B's
    assert b.say(words("qb2", 4)).reused == kept(b1)  # B's slot is intact
    a2 = a.say(words("qa2", 4))  # A's was overwritten: A starts over
    assert a2.reused == HEADER
    assert a2.reply.prompt_eval_count == a2.processed == kept(a1) + 1 + (4 + 4) + 3 - HEADER


@pytest.mark.parametrize(
    ("question_words", "takes_a"),
    # shares 47 tokens of 131 (36%): LRU; of 94 (exactly half: llama-server wants more): LRU;
    # of 61 (77%): A's slot
    [(80, False), (43, False), (10, True)],
)
def test_a_slot_is_preferred_only_when_it_holds_more_than_half_the_prompt(emulator, question_words, takes_a):
    emu = emulator(num_parallel=2)
    system = words("handbook", 40)
    b = Conversation(emu, system=words("unrelated", 40))
    a = Conversation(emu, system=system)
    first = {"b": b.say(words("qb", 10)), "a": a.say(words("qa", 10))}  # B's slot is the older one
    probe = Conversation(emu, system=system).say(words("probe", question_words))
    shared_with_a = 4 + 40 + 3  # the system message, then the user header
    assert probe.reused == (shared_with_a if takes_a else HEADER)
    intact, overwritten = ("b", "a") if takes_a else ("a", "b")
    chats = {"a": a, "b": b}
    assert chats[intact].say(words("again", 3)).reused == kept(first[intact])
    assert chats[overwritten].say(words("again", 3)).reused < kept(first[overwritten])


def test_similarity_zero_always_takes_the_least_recently_used_slot(emulator):
    emu = emulator(num_parallel=2, slot_prompt_similarity=0.0)
    chat = Conversation(emu, system=words("sys", 30))
    first = chat.say(words("q", 10))
    assert chat.say(words("q2", 3)).reused == 0  # the never-used slot is the least recently used
    assert chat.say(words("q3", 3)).reused == kept(first)  # back to the first slot


def test_more_slots_than_conversations_keep_them_all(emulator):
    emu = emulator(num_parallel=4)
    chats = [Conversation(emu, system=words(f"agent{n}", 25)) for n in range(3)]
    last = [chat.say(words(f"task{n}", 8)) for n, chat in enumerate(chats)]
    for round_ in range(3):
        for n, chat in enumerate(chats):
            turn = chat.say(words(f"step{n}x{round_}", 4))
            assert turn.reused == kept(last[n]), (round_, n)
            last[n] = turn


def test_fewer_slots_than_conversations_lose_the_oldest(emulator):
    emu = emulator(num_parallel=2)
    chats = [Conversation(emu, system=words(f"agent{n}", 25)) for n in range(3)]
    for n, chat in enumerate(chats):
        chat.say(words(f"task{n}", 8))
    # Round-robin over three conversations with two slots: each turn finds its
    # slot taken by a newer conversation.
    for n, chat in enumerate(chats):
        assert chat.say(words(f"next{n}", 4)).reused == HEADER


# -- a new runner starts with empty slots ---------------------------------------------------


def test_unload_clears_the_slots(emulator):
    emu = emulator()
    chat = Conversation(emu, system=words("sys", 30))
    chat.say(words("q", 10))
    chat.client.generate(model=MODEL, keep_alive=0)  # unload
    assert emu.stats()["unloads"] == 1
    second = chat.say(words("q2", 3))
    assert second.reused == 0 and second.reply.prompt_eval_count == second.processed


def test_eviction_clears_the_slots(emulator):
    emu = emulator(max_loaded_models=1)
    chat = Conversation(emu, system=words("sys", 30))
    chat.say(words("q", 10))
    Conversation(emu, model=OTHER).say(words("elsewhere", 5))  # evicts llama3.2
    assert chat.say(words("q2", 3)).reused == 0


def test_reload_for_other_load_options_clears_the_slots(emulator):
    emu = emulator()
    chat = Conversation(emu, system=words("sys", 30))
    chat.say(words("q", 10))
    assert chat.say(words("q2", 3), options={"num_ctx": 8192}).reused == 0
    assert emu.stats()["loads"] == 2


def test_reload_for_another_context_shift_clears_the_slots(emulator):
    emu = emulator()
    chat = Conversation(emu, system=words("sys", 30))
    first = chat.say(words("q", 10))
    messages = [*chat.messages, {"role": "user", "content": "again"}]
    body = {"model": MODEL, "messages": messages, "stream": False, "shift": False}
    shifted = measured(emu, lambda: raw(emu.url, "POST", "/api/chat", body).json())
    assert emu.stats()["loads"] == 2
    whole = kept(first) + 1 + (4 + 1) + 3  # the slot had all but the new turn; the new runner has nothing
    assert (shifted.reused, shifted.processed, shifted.reply["prompt_eval_count"]) == (0, whole, whole)


def test_embeddings_reuse_nothing(emulator):
    emu = emulator()
    client = ollama.Client(host=emu.url)
    text = words("doc", 30)
    for _ in range(2):
        turn = measured(emu, lambda: client.embed(model="nomic-embed-text", input=text))
        assert (turn.processed, turn.reused) == (30, 0)


# -- prompt processing rate -------------------------------------------------------------------


def test_prompt_eval_duration_follows_the_rate_for_processed_tokens_only(emulator):
    rate = 4000.0
    emu = emulator(prompt_tokens_per_second=rate)
    chat = Conversation(emu, system=words("context", 300))
    first = chat.say(words("q", 20))
    second = chat.say(words("q2", 5))
    for turn in (first, second):
        reply = turn.reply
        assert reply.prompt_eval_duration == pytest.approx(reply.prompt_eval_count / rate * 1e9, abs=1)
    assert first.reply.prompt_eval_count == 4 + 300 + 4 + 20 + 3
    assert second.reply.prompt_eval_count == 1 + (4 + 5) + 3
    assert second.reply.prompt_eval_duration < first.reply.prompt_eval_duration / 20
    assert first.reply.total_duration >= first.reply.prompt_eval_duration


def test_prompt_rate_defaults_to_ten_times_the_token_rate(emulator):
    emu = emulator(tokens_per_second=200, response_tokens=3)
    reply = ollama.Client(host=emu.url).generate(model=MODEL, prompt=words("p", 97))
    assert reply.prompt_eval_count == 4 + 97 + 3
    assert reply.prompt_eval_duration == pytest.approx(104 / 2000 * 1e9, abs=1)
    assert reply.eval_duration == pytest.approx(3 / 200 * 1e9, abs=3)


# -- decoding slows as more slots decode ------------------------------------------------------


async def _stream_rates(url: str, prompts: list[str]) -> list[float]:
    """Tokens/s of each stream (eval_count / eval_duration), all sent at once."""
    async with ollama.AsyncClient(host=url) as client:

        async def one(prompt: str) -> float:
            final = None
            async for part in await client.generate(model=MODEL, prompt=prompt, stream=True):
                final = part
            assert final is not None and final.done
            return final.eval_count / final.eval_duration * 1e9

        return list(await asyncio.gather(*(one(p) for p in prompts)))


async def test_concurrent_decoders_lower_the_per_stream_rate(emulator):
    # Four decoding at once are twice as fast together as one alone: half speed each.
    emu = emulator(tokens_per_second=100, response_tokens=30, num_parallel=4, decode_scaling=((1, 1.0), (4, 2.0)))
    [alone] = await _stream_rates(emu.url, ["alone"])
    assert alone == pytest.approx(100, rel=1e-6)
    together = await _stream_rates(emu.url, [f"together {n}" for n in range(4)])
    assert all(rate < 0.75 * alone for rate in together), together
    assert sum(together) < 4 * 0.75 * alone


async def test_linear_scaling_keeps_every_stream_at_full_speed(emulator):
    emu = emulator(tokens_per_second=100, response_tokens=20, num_parallel=4, decode_scaling=((1, 1.0),))
    rates = await _stream_rates(emu.url, [f"free {n}" for n in range(4)])
    assert rates == pytest.approx([100] * 4, rel=1e-6)


async def test_default_curve_slows_two_streams(emulator):
    emu = emulator(tokens_per_second=100, response_tokens=30, num_parallel=2)
    [alone] = await _stream_rates(emu.url, ["solo"])
    pair = await _stream_rates(emu.url, ["duo 1", "duo 2"])
    # llama.cpp's batched-bench: two sequences decode 1.22x as fast as one together.
    assert all(rate < 0.8 * alone for rate in pair), pair


# -- the flags ----------------------------------------------------------------------------------


def parse(argv: list[str]) -> EmulatorConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(argv))


def test_flags_reach_a_real_emulator_process(emulator):
    emu = emulator(
        subprocess=True, num_parallel=2, prompt_tokens_per_second=1000.0, slot_prompt_similarity=0.0,
        tokens_per_second=400, response_tokens=4, decode_scaling=((1, 1.0), (2, 2.0)),
    )
    chat = Conversation(emu, system=words("sys", 20))
    first = chat.say(words("q", 5))
    assert first.reply.prompt_eval_duration == pytest.approx(first.reply.prompt_eval_count * 1e6, abs=1)
    assert first.reply.eval_duration == pytest.approx(4 / 400 * 1e9, abs=4)
    assert chat.say(words("q2", 2)).reused == 0  # similarity 0: the other, least recently used slot


@pytest.mark.parametrize(
    ("text", "curve"),
    [
        ("linear", ((1, 1.0),)),
        ("2:1.5,4:2", ((1, 1.0), (2, 1.5), (4, 2.0))),  # one decoder is the unit
        ("1:40,2:50", ((1, 1.0), (2, 1.25))),  # measured tokens/s work as they are
    ],
)
def test_decode_scaling_values(text, curve):
    assert parse(["--decode-scaling", text]).decode_scaling == curve


def test_defaults_are_the_documented_ones():
    config = parse([])
    assert config.decode_scaling == DEFAULT_DECODE_SCALING
    assert config.slot_prompt_similarity == 0.5 and config.prompt_tokens_per_second is None
    assert parse(["--tokens-per-second", "30"]).prompt_rate == 300


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--decode-scaling", "fast"], "'fast' is not DECODERS:SPEEDUP"),
        (["--decode-scaling", "0:1"], "DECODERS must be >= 1"),
        (["--decode-scaling", "1:1,2:nan"], "SPEEDUP > 0"),
        (["--decode-scaling", "4:2,2:1.5"], "increasing order"),
        (["--decode-scaling", "1:1,2:3"], "2 decoders cannot be more than 2 times as fast as one"),
        (["--slot-prompt-similarity", "1.5"], "not between 0 and 1"),
        (["--prompt-tokens-per-second", "-1"], "not >= 0"),
        (["--prompt-tokens-per-second", "many"], "invalid _non_negative value"),
    ],
)
def test_bad_flag_values_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        parse(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
