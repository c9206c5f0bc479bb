"""Prefix affinity as a client sees it, through the real `openai` and `ollama` clients
against emulators that model llama-server's prompt cache: a conversation's turns stay
on one container (X-Router-Container; the emulator evaluates only the new part of the
prompt), spill to a sibling when that container is full, fail over when it dies and stay
moved; a model with one container, and a round_robin model, are placed as they say."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import ollama
import openai
import pytest
import pytest_asyncio

from tests.fleet.support import wait_until
from tests.harness import RouterFleet, router_fleet
from tests.server.support import ollama_client, openai_client, served_by

pytestmark = pytest.mark.asyncio(loop_scope="module")

CATALOG = """
version: 1
defaults: {num_parallel: 2}
containers:
  a: {gpus: [0], port: 1}
  b: {gpus: [1], port: 2}
  q: {gpus: [2], port: 3}
  r1: {gpus: [3], port: 4}
  r2: {gpus: [4], port: 5}
models:
  llama3.2:3b: {containers: [a, b]}
  qwen2.5:7b: {containers: [q]}
  smollm2:135m: {containers: [r1, r2], routing: round_robin}
"""
LLAMA = "llama3.2:3b"
# Turns are short (3 tokens at 40/s); a held request is long (400 tokens) and is left mid-way.
EMULATOR = {"tokens_per_second": 40, "response_tokens": 400, "prompt_tokens_per_second": 0}
TURN_TOKENS = 3
SYSTEM = "You are a careful assistant who answers in few words. " * 30  # about 300 tokens
FOLLOW_UPS = ["Why?", "And then?", "Say more.", "Anything else?"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet() -> AsyncIterator[RouterFleet]:
    async with router_fleet(CATALOG, emulator=EMULATOR) as running:
        await running.wait_warm()
        yield running


@dataclass
class Conversation:
    """One chat, resent whole each turn, as chat clients do."""

    topic: str
    messages: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # a system prompt of its own: no other conversation's cache holds any of it
        system = f"You know {self.topic}. {SYSTEM}"
        self.messages = [{"role": "system", "content": system}, {"role": "user", "content": f"Tell me about {self.topic}."}]

    def answered(self, content: str, follow_up: str) -> None:
        self.messages += [{"role": "assistant", "content": content}, {"role": "user", "content": follow_up}]

    def branch(self) -> list[dict[str, Any]]:
        """The same start (so the same key), then a long turn of its own that shares too little
        with the conversation for the emulator to give it the conversation's cached slot."""
        return [*self.messages[:2], {"role": "assistant", "content": "Sure."}, {"role": "user", "content": "Elaborate. " * 800}]


async def openai_turn(client: openai.AsyncOpenAI, talk: Conversation, follow_up: str) -> tuple[str, int]:
    """One turn: the container that served it and the prompt tokens it had to evaluate."""
    raw = await client.chat.completions.with_raw_response.create(model=LLAMA, messages=talk.messages, max_tokens=TURN_TOKENS)  # type: ignore[arg-type]
    reply = raw.parse()
    assert reply.usage is not None
    talk.answered(reply.choices[0].message.content or "", follow_up)
    return raw.headers["X-Router-Container"], reply.usage.prompt_tokens


async def ollama_turn(client: ollama.AsyncClient, talk: Conversation, follow_up: str) -> int:
    reply = await client.chat(model=LLAMA, messages=talk.messages, options={"num_predict": TURN_TOKENS})
    talk.answered(reply.message.content or "", follow_up)
    return reply.prompt_eval_count or 0


@contextlib.asynccontextmanager
async def held(client: openai.AsyncOpenAI, messages: list[dict[str, Any]]) -> AsyncIterator[str]:
    """A long stream kept open (its first token read), so its container has one more in flight."""
    opened = client.chat.completions.with_streaming_response.create(model=LLAMA, messages=messages, stream=True)  # type: ignore[arg-type]
    async with opened as response:
        lines = response.iter_lines()  # kept open: leaving the loop early would close the stream
        while not (await anext(lines)).startswith("data:"):
            pass
        yield response.headers["X-Router-Container"]
        await lines.aclose()


async def in_flight(fleet: RouterFleet, name: str) -> int:
    return next(c["in_flight"] for c in (await fleet.status())["containers"] if c["name"] == name)  # type: ignore[no-any-return]


async def affinity_counts(fleet: RouterFleet, model: str = LLAMA) -> dict[str, int]:
    return next(m for m in (await fleet.status())["models"] if m["model"] == model)["affinity"]  # type: ignore[no-any-return]


def other(container: str) -> str:
    return "b" if container == "a" else "a"


async def test_an_openai_conversation_stays_on_its_container_while_the_sibling_is_idler(fleet: RouterFleet) -> None:
    client = openai_client(fleet)
    talk = Conversation("whales")
    before = await affinity_counts(fleet)
    home, first_prompt = await openai_turn(client, talk, FOLLOW_UPS[0])
    assert first_prompt > 300  # the whole conversation, evaluated once
    reused_before = (await fleet.backends[home].stats())["prompt_tokens_reused"]
    async with held(client, talk.branch()) as busy:
        assert busy == home  # the same conversation: its container
        for follow_up in FOLLOW_UPS[1:]:
            assert (await in_flight(fleet, home), await in_flight(fleet, other(home))) == (1, 0)
            # least-loaded would pick the idle sibling now; the conversation goes home
            container, prompt_tokens = await openai_turn(client, talk, follow_up)
            assert container == home
            assert prompt_tokens < 30  # only the new turn: the rest was still in its slot
    reused = (await fleet.backends[home].stats())["prompt_tokens_reused"] - reused_before
    assert reused > 3 * first_prompt
    after = await affinity_counts(fleet)
    assert after["miss"] - before["miss"] == 1
    assert after["hit"] - before["hit"] == len(FOLLOW_UPS)  # the three turns and the held branch


async def test_an_ollama_conversation_stays_on_its_container_while_the_sibling_is_idler(fleet: RouterFleet) -> None:
    client, holder = ollama_client(fleet), openai_client(fleet)
    talk = Conversation("owls")
    first_prompt, first = await served_by(fleet, lambda: ollama_turn(client, talk, FOLLOW_UPS[0]))
    (home,) = first
    assert first_prompt > 300
    async with held(holder, talk.branch()) as busy:
        assert busy == home
        for follow_up in FOLLOW_UPS[1:]:
            assert (await in_flight(fleet, home), await in_flight(fleet, other(home))) == (1, 0)
            prompt_tokens, served = await served_by(fleet, lambda: ollama_turn(client, talk, follow_up))  # noqa: B023 - awaited at once
            assert served == {home: 1}
            assert prompt_tokens < 30


async def messages_or_responses_turn(fleet: RouterFleet, api: str, talk: Conversation) -> str:
    """One turn through Anthropic's client (`system` + `messages`) or OpenAI Responses
    (`instructions` + `input`); the container that served it."""
    system, rest = talk.messages[0]["content"], talk.messages[1:]
    if api == "anthropic":
        claude = anthropic.AsyncAnthropic(base_url=fleet.url, api_key="unused", max_retries=0)
        raw = await claude.messages.with_raw_response.create(model=LLAMA, max_tokens=TURN_TOKENS, system=system, messages=rest)  # type: ignore[arg-type]
        message = await raw.parse()  # anthropic's async raw response parses asynchronously
        answer = "".join(block.text for block in message.content if block.type == "text")
    else:
        responses = await openai_client(fleet).responses.with_raw_response.create(
            model=LLAMA, max_output_tokens=TURN_TOKENS, instructions=system, input=rest,  # type: ignore[arg-type]
        )
        raw, answer = responses, responses.parse().output_text
    talk.answered(answer, "And then?")
    return raw.headers["X-Router-Container"]


@pytest.mark.parametrize("api", ["anthropic", "responses"])
async def test_anthropic_and_responses_conversations_stay_on_their_container(fleet: RouterFleet, api: str) -> None:
    talk = Conversation(f"{api} glaciers")
    home = await messages_or_responses_turn(fleet, api, talk)
    reused = (await fleet.backends[home].stats())["prompt_tokens_reused"]
    # the same conversation through OpenAI chat: the same key, so the same container, now busier
    async with held(openai_client(fleet), talk.branch()) as busy:
        assert busy == home
        for _ in range(2):
            assert (await in_flight(fleet, home), await in_flight(fleet, other(home))) == (1, 0)
            assert await messages_or_responses_turn(fleet, api, talk) == home
    assert (await fleet.backends[home].stats())["prompt_tokens_reused"] - reused > 600  # its prompt, found cached


async def test_a_full_container_spills_the_conversation_to_its_sibling_where_it_stays(fleet: RouterFleet) -> None:
    client = openai_client(fleet)
    talk = Conversation("rivers")
    before = await affinity_counts(fleet)
    home, _ = await openai_turn(client, talk, FOLLOW_UPS[0])
    async with held(client, talk.branch()) as one, held(client, talk.branch()) as two:
        assert one == two == home  # num_parallel 2: full now
        assert await in_flight(fleet, home) == 2
        container, prompt_tokens = await openai_turn(client, talk, FOLLOW_UPS[1])
        assert container == other(home)
        assert prompt_tokens > 300  # the sibling had none of it
    assert (await affinity_counts(fleet))["spillover"] - before["spillover"] == 1
    # its old container is idle again; the conversation stays where its prompt now is
    container, prompt_tokens = await openai_turn(client, talk, FOLLOW_UPS[2])
    assert container == other(home)
    assert prompt_tokens < 30


async def test_a_model_with_one_container_is_not_keyed(fleet: RouterFleet) -> None:
    client = openai_client(fleet)
    keys_before = (await fleet.status())["counters"]["affinity_keys"]
    for turn in range(3):
        raw = await client.chat.completions.with_raw_response.create(
            model="qwen2.5:7b", messages=[{"role": "user", "content": f"Only container, turn {turn}"}], max_tokens=TURN_TOKENS,
        )
        assert raw.headers["X-Router-Container"] == "q"
    status = await fleet.status()
    qwen = next(m for m in status["models"] if m["model"] == "qwen2.5:7b")
    assert qwen["routing"] == "least_loaded"
    assert qwen["affinity"] == {"hit": 0, "miss": 0, "spillover": 0, "failover": 0}
    assert status["counters"]["affinity_keys"] == keys_before


async def test_round_robin_cycles_the_containers_for_one_conversation(fleet: RouterFleet) -> None:
    client = openai_client(fleet)
    served = []
    for _ in range(4):  # sequential: least-loaded would send every one to the primary
        raw = await client.chat.completions.with_raw_response.create(
            model="smollm2:135m", messages=[{"role": "user", "content": "same conversation"}], max_tokens=TURN_TOKENS,
        )
        served.append(raw.headers["X-Router-Container"])
    assert served in (["r1", "r2", "r1", "r2"], ["r2", "r1", "r2", "r1"])


async def test_metrics_count_the_placements_per_model_and_outcome(fleet: RouterFleet) -> None:
    counts = await affinity_counts(fleet)
    async with fleet.session.get(fleet.url + "/metrics") as response:
        text = await response.text()
    for outcome, value in counts.items():
        assert f'ollama_router_affinity_total{{model="{LLAMA}",outcome="{outcome}"}} {float(value)}' in text
    assert counts["hit"] > 0 and counts["miss"] > 0
    assert 'model="qwen2.5:7b"' not in text.split("ollama_router_affinity_total", 1)[1].split("# HELP", 1)[0]


async def test_when_its_container_dies_the_conversation_fails_over_and_stays_moved() -> None:
    emulator = {**EMULATOR, "response_tokens": 8}
    async with router_fleet(CATALOG, emulator=emulator, subprocess_containers={"a", "b"},
                            settings={"health_interval": 0.3, "probe_timeout": 1.0}) as fleet:
        await fleet.wait_warm()
        client = openai_client(fleet)
        talk = Conversation("volcanoes")
        home, _ = await openai_turn(client, talk, FOLLOW_UPS[0])
        fleet.backends[home].kill()
        container, prompt_tokens = await openai_turn(client, talk, FOLLOW_UPS[1])
        assert container == other(home)
        assert prompt_tokens > 300  # a fresh start there
        assert (await affinity_counts(fleet))["failover"] >= 1
        await fleet.backends[home].restart()

        async def back() -> bool:
            state = next(c for c in (await fleet.status())["containers"] if c["name"] == home)
            return state["state"] == "up" and any(m["model"] == LLAMA for m in state["loaded"])

        await wait_until(back, timeout=20)
        for follow_up in FOLLOW_UPS[2:]:
            container, prompt_tokens = await openai_turn(client, talk, follow_up)
            assert container == other(home)  # moved for good: its prompt is there now
            assert prompt_tokens < 30
        served = await asyncio.gather(*(b.stats() for b in fleet.backends.values() if b.name == home))
        assert served[0]["prompt_tokens_processed"] == 0  # the restarted one never saw the conversation again


TWO_CONTAINERS = """
version: 1
defaults: {num_parallel: 2}
containers:
  a: {gpus: [0], port: 1}
  b: {gpus: [1], port: 2}
models:
  llama3.2:3b: {containers: [a, b]}
"""


async def test_short_conversations_in_between_do_not_push_a_live_agent_out_of_its_slot() -> None:
    """Four slots over two containers; between an agent's turns, four one-question chats each
    take a slot. Placed by load (all idle: an order by key), two of them on the agent's
    container would push its long prompt out of its slot; placed by what they displace, they
    take the slots of chats that are over and the agent's next turn evaluates only what it adds."""
    async with router_fleet(TWO_CONTAINERS, emulator=EMULATOR) as fleet:
        await fleet.wait_warm()
        client, chats = openai_client(fleet), ollama_client(fleet)
        agent = Conversation("the repository " + "and its modules " * 300)  # a long system prompt
        home, first_prompt = await openai_turn(client, agent, FOLLOW_UPS[0])
        assert first_prompt > 1000
        hosts: set[str] = set()
        for round_ in range(4):
            for question in range(4):
                chat = Conversation(f"question {round_}-{question}")
                raw = await chats.chat(model=LLAMA, messages=chat.messages, options={"num_predict": TURN_TOKENS})
                assert (raw.prompt_eval_count or 0) > 300  # a new conversation: evaluated whole
            container, prompt_tokens = await openai_turn(client, agent, FOLLOW_UPS[(round_ + 1) % len(FOLLOW_UPS)])
            hosts.add(container)
            assert prompt_tokens < 30, f"round {round_}: the agent's prompt was pushed out of its slot"
        assert hosts == {home}
        counts = await affinity_counts(fleet)
        assert counts["hit"] == 4 and counts["spillover"] == counts["failover"] == 0
