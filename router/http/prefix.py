"""Conversation keys: what stays the same across the turns of one conversation.

A chat client resends its whole, growing conversation every turn, so the
start of it never changes: the system prompt (and any other leading
system/developer messages) and the first message that is not one. A
completion client's prompt grows the same way from its first part. The key is
a 64-bit hash of that start, read from the body the handler already parsed;
prefix affinity (router.fleet.routing) remembers which container served a key
last and sends the next turn there, where the model's slots still hold the
conversation's prompt. Only the hash is kept, never the text.

Bounded work whatever the conversation's length: at most MAX_LEADING + 1
messages are read, and of each only its first HEAD and last TAIL characters
(the end too, so that sessions sharing a long system prompt or preamble are
still told apart by what follows it); a raw prompt gives its first
RAW_PREFIX characters. A client that names the conversation itself (OpenAI's
`prompt_cache_key`) is keyed by that name.

With the key comes the conversation's preamble: the hash of its leading
system part alone (0 when it has none), which sessions of the same agent or
app share. llama-server gives a new conversation the slot of one that shares
more than half of its prompt, so a first turn that is mostly a shared system
prompt takes over the slot of another session with that preamble; affinity
uses it to keep new sessions off containers where that would cost a live one
its prompt.
"""

from __future__ import annotations

from collections.abc import Callable
from hashlib import blake2b
from typing import Any, NamedTuple

HEAD = 256
TAIL = 256
RAW_PREFIX = 512
MAX_LEADING = 4  # system/developer messages read before the first other one
MAX_PARTS = 8  # content parts read of one message
LEADING_ROLES = frozenset({"system", "developer"})
SEPARATOR = "\x00"

Payload = dict[str, Any]


class Conversation(NamedTuple):
    key: int  # the hash of the conversation's start
    preamble: int  # the hash of its leading system part alone; 0: none


KeyFunction = Callable[[Payload], "Conversation | None"]


def digest(parts: list[str]) -> int:
    data = SEPARATOR.join(parts).encode("utf-8", "surrogatepass")  # never raises, whatever the str holds
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "little")


def _bounded(text: str) -> str:
    return text if len(text) <= HEAD + TAIL else text[:HEAD] + text[-TAIL:]


def _text(content: object) -> str:
    """A message's text: a string, or the text of its parts (OpenAI, Anthropic and Responses parts)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = []
    for part in content[:MAX_PARTS]:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and isinstance(text := part.get("text"), str):
            texts.append(text)
    return "\n".join(texts)


def _conversation(parts: list[str], leading: int) -> Conversation:
    """The key of `parts`, and the preamble of its first `leading` parts (past the tag)."""
    return Conversation(digest(parts), digest(parts[:leading]) if leading > 1 else 0)


def _leading_messages(messages: object, parts: list[str]) -> int:
    """Adds the leading messages to `parts`; returns how many parts the preamble takes
    (those before the first message that is not a system one), or 0 when `messages` holds none."""
    if not isinstance(messages, list):
        return 0
    preamble = len(parts)
    added = False
    for message in messages[: MAX_LEADING + 1]:
        if not isinstance(message, dict):
            break
        role = message.get("role")
        if not isinstance(role, str):
            role = ""
        content = message.get("content")
        text = content if isinstance(content, str) else _text(content)
        parts += (role, text if len(text) <= HEAD + TAIL else text[:HEAD] + text[-TAIL:])
        added = True
        if role not in LEADING_ROLES:
            break
        preamble = len(parts)
    return preamble if added else 0


def _named(payload: Payload) -> Conversation | None:
    name = payload.get("prompt_cache_key")
    return Conversation(digest(["named", name]), 0) if isinstance(name, str) and name else None


def _messages_key(parts: list[str], messages: object) -> Conversation | None:
    leading = _leading_messages(messages, parts)
    return _conversation(parts, leading) if leading else None


def chat_key(payload: Payload) -> Conversation | None:
    """OpenAI chat completions and Ollama's /api/chat: `messages`."""
    return _named(payload) or _messages_key(["chat"], payload.get("messages"))


def _prompt_key(system: object, prompt: object) -> Conversation | None:
    if isinstance(prompt, list) and prompt:  # OpenAI completions may send a batch: its first prompt
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        return None  # an empty prompt only loads the model
    parts = ["prompt", _bounded(system) if isinstance(system, str) else "", prompt[:RAW_PREFIX]]
    return _conversation(parts, 2 if parts[1] else 0)


def generate_key(payload: Payload) -> Conversation | None:
    """Ollama's /api/generate: `system` and the start of `prompt` (a raw prompt has no system part)."""
    return _prompt_key(None if payload.get("raw") is True else payload.get("system"), payload.get("prompt"))


def completion_key(payload: Payload) -> Conversation | None:
    """OpenAI completions: the start of `prompt`."""
    return _named(payload) or _prompt_key(None, payload.get("prompt"))


def responses_key(payload: Payload) -> Conversation | None:
    """OpenAI Responses: `instructions` (a system message to Ollama), then `input`, a string or items."""
    named = _named(payload)
    if named is not None:
        return named
    parts = ["chat"]
    instructions = payload.get("instructions")
    if isinstance(instructions, str) and instructions:
        parts += ("system", _bounded(instructions))
    items = payload.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    return _messages_key(parts, items)


def anthropic_key(payload: Payload) -> Conversation | None:
    """Anthropic Messages: `system` (a string or text blocks), then `messages`."""
    parts = ["chat"]
    system = _text(payload.get("system"))
    if system:
        parts += ("system", _bounded(system))
    return _messages_key(parts, payload.get("messages"))
