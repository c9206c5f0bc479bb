"""The slot prompt cache behind the compatibility endpoints (Responses, Anthropic
Messages, transcriptions): each renders its conversation as /api/chat does, so a
conversation resent with one more turn evaluates only the new part, which is what
the usage each API reports counts (Ollama reports prompt_eval_count as input tokens).

Clients are the real SDKs; /_emulator/stats says what was evaluated and reused.
"""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from tests.emulator.support import measured, words

MODEL = "llama3.2"
ANSWER_TOKENS = 8
# What a turn adds after the slot's cached prompt and answer: the answer's end
# marker, the new user message (4 tokens besides its words) and the next answer's header.
NEW_TURN_FRAME = 1 + 4 + 3


@pytest.fixture
def emu(emulator):
    return emulator(models=[MODEL], audio_models=["gemma3n:e4b"], response_tokens=ANSWER_TOKENS)


def test_responses_later_turns_evaluate_only_the_new_part(emu):
    client = openai.OpenAI(base_url=emu.url + "/v1", api_key="unused", max_retries=0)
    instructions = words("rules", 40)
    conversation: list[Any] = [{"role": "user", "content": words("question", 20)}]
    first = measured(emu, lambda: client.responses.create(model=MODEL, instructions=instructions, input=conversation))
    assert first.reused == 0
    assert first.reply.usage.input_tokens == first.processed == 4 + 40 + 4 + 20 + 3  # the rendered chat
    assert first.reply.usage.output_tokens == ANSWER_TOKENS

    # As the SDK's docs do: the previous output items go back in, then the next message.
    conversation += [*first.reply.output, {"role": "user", "content": words("followup", 10)}]
    second = measured(emu, lambda: client.responses.create(model=MODEL, instructions=instructions, input=conversation))
    assert second.reused == first.processed + ANSWER_TOKENS
    assert second.reply.usage.input_tokens == second.processed == NEW_TURN_FRAME + 10
    assert second.reply.usage.input_tokens_details.cached_tokens == 0  # Ollama never reports it

    conversation += [*second.reply.output, {"role": "user", "content": words("more", 5)}]

    def streamed() -> Any:
        events = client.responses.create(model=MODEL, instructions=instructions, input=conversation, stream=True)
        return next(event for event in events if event.type == "response.completed").response

    third = measured(emu, streamed)
    assert third.reused == second.processed + second.reused + ANSWER_TOKENS
    assert third.reply.usage.input_tokens == third.processed == NEW_TURN_FRAME + 5


def test_anthropic_messages_later_turns_evaluate_only_the_new_part(emu):
    client = anthropic.Anthropic(base_url=emu.url, api_key="sk-ant-unused", max_retries=0)
    system = words("persona", 30)
    messages: list[Any] = [{"role": "user", "content": words("ask", 12)}]
    first = measured(emu, lambda: client.messages.create(model=MODEL, max_tokens=100, system=system, messages=messages))
    assert first.reused == 0
    assert first.reply.usage.input_tokens == first.processed == 4 + 30 + 4 + 12 + 3

    messages += [{"role": "assistant", "content": first.reply.content}, {"role": "user", "content": words("more", 5)}]
    second = measured(emu, lambda: client.messages.create(model=MODEL, max_tokens=100, system=system, messages=messages))
    assert second.reused == first.processed + ANSWER_TOKENS
    assert second.reply.usage.input_tokens == second.processed == NEW_TURN_FRAME + 5

    messages += [{"role": "assistant", "content": second.reply.content}, {"role": "user", "content": words("last", 3)}]

    def streamed() -> Any:
        with client.messages.stream(model=MODEL, max_tokens=100, system=system, messages=messages) as stream:
            return stream.get_final_message()  # usage from message_delta: the real counts

    third = measured(emu, streamed)
    assert third.reused == second.processed + second.reused + ANSWER_TOKENS
    assert third.reply.usage.input_tokens == third.processed == NEW_TURN_FRAME + 3


def test_transcriptions_reuse_the_instructions_before_the_audio(emu):
    client = openai.OpenAI(base_url=emu.url + "/v1", api_key="unused", max_retries=0)

    def transcribe(audio: bytes) -> Any:
        return client.audio.transcriptions.create(model="gemma3n:e4b", file=("a.wav", audio))

    first = measured(emu, lambda: transcribe(b"RIFF first recording"))
    assert first.reused == 0 and first.processed > 40  # Ollama's instructions and the audio
    # Another recording: the instructions are still in the slot; the audio (4
    # tokens in the emulator), its end marker and the answer header are new.
    other = measured(emu, lambda: transcribe(b"RIFF another recording"))
    assert (other.processed, other.reused) == (4 + 1 + 3, first.processed - (4 + 1 + 3))
    # The same recording again: everything but the last prompt token is cached.
    again = measured(emu, lambda: transcribe(b"RIFF another recording"))
    assert (again.processed, again.reused) == (1, other.processed + other.reused - 1)
    assert again.reply.text == other.reply.text != first.reply.text
