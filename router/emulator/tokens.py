"""The emulator's tokenizer and prompt rendering: what a slot's cache holds.

Tokenization is deterministic and word-level: every run of up to 16 word
characters (`\\w{1,16}`; longer words are split, as subword tokenizers split
them) is one token and every other non-space character is one token of its
own; whitespace separates tokens and is not one. A token's id is a CRC-32 of
its text folded into the model vocabulary, so the same text always gives the
same ids on every emulator, and two texts share a prefix of tokens exactly
where they share a prefix of words.

The prompt of a request is its rendered conversation, like a chat template
renders it: each message is `START role SEP content... END` (4 tokens around
its content), in order with the system prompt first, then `START assistant
SEP` opens the answer (3 tokens). A raw prompt is a begin-of-text token
and its tokens. A conversation resent with one more turn therefore starts
with the tokens of the previous request followed by the previous answer.

A token sequence is `bytes`: the ids packed as native unsigned 32-bit
integers. That keeps a 30,000-token conversation one flat object that
concatenates and compares at C speed (a prefix check is a memcmp).
"""

from __future__ import annotations

import re
import zlib
from array import array
from collections.abc import Iterable
from functools import lru_cache

TokenSeq = bytes

WORD_OR_MARK = re.compile(r"\w{1,16}|[^\w\s]")
VOCABULARY_SIZE = 128256
# The top of the vocabulary is kept for the template's markers, as real
# tokenizers keep special tokens apart from text.
_SPECIAL_BASE = VOCABULARY_SIZE - 256
START, SEP, END, BOS = (_SPECIAL_BASE + i for i in range(4))
_ITEM = array("I").itemsize
assert _ITEM == 4, "token ids are packed as 32-bit integers"
# Blocks compared in one go while looking for where two sequences part.
_BLOCK_BYTES = 1024 * _ITEM
# Texts up to this long are remembered, so the memory the caches can take stays bounded.
_CACHED_TEXT_CHARS = 16384


@lru_cache(maxsize=1 << 16)  # pieces are at most 16 characters: bounded
def _piece_id(piece: str) -> int:
    return zlib.crc32(piece.encode()) % _SPECIAL_BASE


def _pack(ids: Iterable[int]) -> TokenSeq:
    return array("I", ids).tobytes()


def _tokenize(text: str) -> TokenSeq:
    return _pack(map(_piece_id, WORD_OR_MARK.findall(text)))


_tokenize_cached = lru_cache(maxsize=1024)(_tokenize)


def tokenize(text: str) -> TokenSeq:
    """The tokens of `text` (cached: a conversation resends the same messages)."""
    if len(text) > _CACHED_TEXT_CHARS:
        return _tokenize(text)
    return _tokenize_cached(text)


@lru_cache(maxsize=4096)
def _text_token_count(text: str) -> int:
    return len(WORD_OR_MARK.findall(text))


def count_tokens(text: str) -> int:
    """How many tokens tokenize(text) gives, without making them (embeddings
    need only the count; cached: inputs repeat)."""
    if not text:
        return 0
    if len(text) > 4096:  # too big to be worth caching
        return len(WORD_OR_MARK.findall(text))
    return _text_token_count(text)


def token_count(tokens: TokenSeq) -> int:
    return len(tokens) // _ITEM


def token_prefix(tokens: TokenSeq, count: int) -> TokenSeq:
    return tokens[: count * _ITEM]


def token_suffix(tokens: TokenSeq, count: int) -> TokenSeq:
    return tokens[len(tokens) - count * _ITEM :] if count > 0 else b""


def _header(role: str) -> TokenSeq:
    """`START role SEP`: a role is one marker token whatever its text."""
    return _pack((START, zlib.crc32(role.encode()) % _SPECIAL_BASE, SEP))


_HEADERS = {role: _header(role) for role in ("system", "user", "assistant", "tool")}


def _role_header(role: object) -> TokenSeq:
    if not isinstance(role, str):
        role = ""
    return _HEADERS.get(role) or _header(role)


_END = _pack((END,))
# What a message costs besides its content (START role SEP ... END), and the
# answer's header that closes every chat prompt (START assistant SEP).
MESSAGE_FRAME_TOKENS = 4
ANSWER_HEADER_TOKENS = 3


def message_size(content: str) -> int:
    """The tokens one message of a rendered chat takes."""
    return token_count(tokenize(content)) + MESSAGE_FRAME_TOKENS


def render_chat(turns: Iterable[tuple[object, str]]) -> TokenSeq:
    """The prompt of a chat: every (role, content) in order, then the answer's header
    (a role that is not a string counts as an empty one)."""
    parts: list[bytes] = []
    for role, content in turns:
        parts += (_role_header(role), tokenize(content), _END)
    parts.append(_header("assistant"))
    return b"".join(parts)


_BOS = _pack((BOS,))


def render_prompt(prompt: str, system: str = "", *, raw: bool = False) -> TokenSeq:
    """The prompt of a completion: a raw one as is (after the begin-of-text
    token a tokenizer adds), else a system + user chat."""
    if raw:
        return _BOS + tokenize(prompt)
    turns = [("system", system)] if system else []
    turns.append(("user", prompt))
    return render_chat(turns)


def common_prefix(a: TokenSeq, b: TokenSeq) -> int:
    """How many tokens `a` and `b` share at their start."""
    if len(a) > len(b):
        a, b = b, a
    if b.startswith(a):  # the common case: a cached conversation that grew
        return len(a) // _ITEM
    # Find the first block that differs, then halve inside it; slices stay small.
    start = 0
    while a[start : start + _BLOCK_BYTES] == b[start : start + _BLOCK_BYTES]:
        start += _BLOCK_BYTES
    low, high = start, min(start + _BLOCK_BYTES, len(a))  # a[:low] == b[:low], a[:high] != b[:high]
    while high - low > 1:
        middle = (low + high) // 2
        if a[start:middle] == b[start:middle]:
            low = middle
        else:
            high = middle
    return low // _ITEM
