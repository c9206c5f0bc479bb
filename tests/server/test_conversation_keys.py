"""Conversation keys from parsed bodies (router.http.prefix through each API's adapter):
the same across the turns of one conversation and across APIs, different between
conversations, never an exception whatever the body."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from router.http.apis import api_for
from router.http.prefix import Conversation

SYSTEM = "You are a coding agent. " * 200  # a long system prompt many sessions share
TASK = "Fix the failing test in parser.py"


def key(path: str, body: dict[str, Any]) -> Conversation | None:
    return api_for(path).conversation_key(path, orjson.loads(orjson.dumps(body)))


def conversation(turns: int, task: str = TASK, system: str = SYSTEM) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}, {"role": "user", "content": task}]
    for turn in range(turns):
        messages += [
            {"role": "assistant", "content": f"Running the tests, step {turn}."},
            {"role": "user", "content": f"tool output {turn}: " + "x " * 2000},
        ]
    return messages


def test_a_growing_chat_keeps_its_key_on_both_apis() -> None:
    for path in ("/v1/chat/completions", "/api/chat"):
        keys = {key(path, {"model": "m", "messages": conversation(turns)}) for turns in range(30)}
        assert len(keys) == 1 and None not in keys


def test_the_same_conversation_has_the_same_key_whichever_api_sends_it() -> None:
    openai = key("/v1/chat/completions", {"model": "m", "messages": conversation(3)})
    ollama = key("/api/chat", {"model": "m", "messages": conversation(5)})
    anthropic = key("/v1/messages", {"model": "m", "max_tokens": 9, "system": SYSTEM, "messages": conversation(2)[1:]})
    blocks = key("/v1/messages", {"model": "m", "max_tokens": 9, "system": [{"type": "text", "text": SYSTEM}],
                                  "messages": [{"role": "user", "content": [{"type": "text", "text": TASK}]}]})
    responses = key("/v1/responses", {"model": "m", "instructions": SYSTEM, "input": TASK})
    items = key("/v1/responses", {"model": "m", "instructions": SYSTEM,
                                  "input": [{"role": "user", "content": [{"type": "input_text", "text": TASK}]}]})
    assert openai is not None
    assert openai == ollama == anthropic == blocks == responses == items


def test_conversations_sharing_a_long_system_prompt_and_preamble_are_told_apart() -> None:
    preamble = "<context>the repository layout, the coding rules, the tools</context> " * 40
    first = key("/v1/chat/completions", {"model": "m", "messages": conversation(0, preamble + "Fix the parser")})
    second = key("/v1/chat/completions", {"model": "m", "messages": conversation(0, preamble + "Add a CLI flag")})
    assert first != second
    other_system = key("/v1/chat/completions", {"model": "m", "messages": conversation(0, system="Be brief.")})
    assert other_system != first


def preamble(path: str, body: dict[str, Any]) -> int:
    found = key(path, body)
    assert found is not None
    return found.preamble


def test_sessions_of_one_agent_share_a_preamble_on_every_api_and_other_agents_do_not() -> None:
    sessions = {
        preamble("/v1/chat/completions", {"model": "m", "messages": conversation(0, task)}) for task in ("Fix the parser", "Add a flag")
    }
    sessions.add(preamble("/api/chat", {"model": "m", "messages": conversation(4, "Write docs")}))
    sessions.add(preamble("/v1/messages", {"model": "m", "max_tokens": 9, "system": SYSTEM, "messages": conversation(1)[1:]}))
    sessions.add(preamble("/v1/responses", {"model": "m", "instructions": SYSTEM, "input": "Rename a module"}))
    assert len(sessions) == 1 and 0 not in sessions
    assert preamble("/v1/chat/completions", {"model": "m", "messages": conversation(0, system="Be brief.")}) not in sessions
    # no system part: nothing shared with other conversations
    assert preamble("/v1/chat/completions", {"model": "m", "messages": conversation(2)[1:]}) == 0
    assert preamble("/v1/completions", {"model": "m", "prompt": "Once upon a time"}) == 0
    assert preamble("/api/generate", {"model": "m", "prompt": "Once", "system": "A"}) == preamble(
        "/api/generate", {"model": "m", "prompt": "Twice", "system": "A"}
    ) != 0


def test_prompts_key_by_their_start() -> None:
    start = "Once upon a time " * 50
    grown = [key("/api/generate", {"model": "m", "prompt": start + "x " * n}) for n in (0, 100, 1000)]
    assert len(set(grown)) == 1 and grown[0] is not None
    assert key("/api/generate", {"model": "m", "prompt": start, "system": "A"}) != key(
        "/api/generate", {"model": "m", "prompt": start, "system": "B"}
    )
    # a raw prompt is sent as it is: a system field plays no part in it
    assert key("/api/generate", {"model": "m", "prompt": start, "raw": True, "system": "A"}) == key(
        "/api/generate", {"model": "m", "prompt": start, "raw": True}
    )
    assert key("/v1/completions", {"model": "m", "prompt": start + "y"}) == key("/v1/completions", {"model": "m", "prompt": [start]})


def test_a_client_that_names_its_conversation_is_keyed_by_the_name() -> None:
    named = [key(path, {"model": "m", "prompt_cache_key": "session-42", "messages": conversation(turns), "input": str(turns)})
             for path, turns in (("/v1/chat/completions", 1), ("/v1/responses", 2))]
    assert named[0] == named[1]
    assert named[0] != key("/v1/chat/completions", {"model": "m", "prompt_cache_key": "session-43", "messages": conversation(1)})


def test_requests_without_a_conversation_have_no_key() -> None:
    assert key("/api/generate", {"model": "m"}) is None  # a load request
    assert key("/api/generate", {"model": "m", "prompt": ""}) is None
    assert key("/api/chat", {"model": "m", "messages": []}) is None  # a load request too
    assert key("/v1/embeddings", {"model": "m", "input": "hello"}) is None
    assert key("/api/embed", {"model": "m", "input": "hello"}) is None
    assert key("/api/show", {"model": "m"}) is None
    assert key("/v1/chat/completions", {"model": "m", "messages": "not a list"}) is None
    assert key("/v1/chat/completions", {"model": "m", "messages": [42]}) is None


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
FIELDS = st.sampled_from(["messages", "prompt", "system", "input", "instructions", "prompt_cache_key", "raw", "content", "role"])
PATHS = ["/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages", "/api/chat", "/api/generate"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PATHS), st.dictionaries(FIELDS, JSON | st.lists(st.dictionaries(FIELDS, JSON), max_size=4), max_size=5))
def test_any_body_gives_a_64_bit_key_or_none_and_never_raises(path: str, body: dict[str, Any]) -> None:
    found = key(path, body)
    assert found is None or (0 <= found.key < 2**64 and 0 <= found.preamble < 2**64)

