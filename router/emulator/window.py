"""The context window of a loaded model (docs/ollama-wire-2026.md §7).

- num_ctx: the request's `options.num_ctx`, else OLLAMA_CONTEXT_LENGTH
  (`--context-length`), else a default from the GPU memory (`--vram-gib`);
  at least 4, at most what the model was trained for (§7.1).
- shift: the request's `"shift"`, else on (off for the deepseek2 family).
  Both are fixed when a runner starts; a request that resolves either one
  differently reloads the model (§7.2, the scheduler compares them).
- A prompt longer than the window: chat drops its oldest non-system
  messages first; what still does not fit is cut silently with shift on and
  refused (400) with shift off (§7.3). Embeddings refuse only when asked
  not to truncate (§7.4).

The engine fits a prompt once the runner (so num_ctx) is known and before the
slot cache looks at it: what the cache matches is the prompt as fitted, so a
prompt that lost messages or was cut shares with a slot only what is left.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from router.emulator.config import EmulatorConfig
from router.emulator.errors import ApiError
from router.emulator.store import ModelInfo
from router.emulator.tokens import (
    ANSWER_HEADER_TOKENS,
    TokenSeq,
    message_size,
    render_chat,
    token_count,
    token_prefix,
    token_suffix,
)
from router.emulator.versions import EMBED_REFUSAL_SINCE, PROMPT_REFUSAL_SINCE, VRAM_CONTEXT_SINCE, at_least

PROMPT_TOO_LONG = (
    "the prompt is longer than the context length currently available to the model; "
    "shorten the prompt, adjust the context length in settings, or use a model with a longer context length"
)
INPUT_TOO_LONG = "the input length exceeds the context length"
LEGACY_INPUT_TOO_LONG = "input exceeds maximum context length"
MIN_NUM_CTX = 4
LEGACY_NUM_CTX = 4096
# The tokens a runner always keeps at the front of a shifted prompt: num_keep (4) and BOS.
KEEP_TOKENS = 5
# Tokens an embedding runner adds around every input (BOS and EOS).
EMBED_SPECIAL_TOKENS = 2
NO_SHIFT_FAMILIES = frozenset({"deepseek2"})

# What the window lets a runner evaluate: how many prompt tokens and, for a
# rendered prompt, those tokens (what the slot cache then matches and keeps).
Fitted = tuple[int, TokenSeq | None]
# num_ctx -> what is evaluated, or an ApiError for a prompt the window refuses.
Fit = Callable[[int], Fitted]


def vram_default(vram_gib: float) -> int:
    """The automatic num_ctx for this much GPU memory (47/23 GiB on purpose, §7.1)."""
    if vram_gib >= 47:
        return 262144
    if vram_gib >= 23:
        return 32768
    return 4096


def default_num_ctx(config: EmulatorConfig) -> int:
    """What a load that names no num_ctx gets on this server."""
    if config.context_length > 0:
        return config.context_length
    if not at_least(config, VRAM_CONTEXT_SINCE):
        return LEGACY_NUM_CTX
    return vram_default(config.vram_gib)


def resolve_num_ctx(options: dict[str, Any] | None, default: int, info: ModelInfo) -> int:
    """The runner's per-slot num_ctx for a request with these native options."""
    asked = options.get("num_ctx") if options else None
    explicit = isinstance(asked, (int, float)) and not isinstance(asked, bool) and asked > 0
    num_ctx = int(asked) if explicit else default  # type: ignore[arg-type]
    return min(max(num_ctx, MIN_NUM_CTX), info.context_length)


def resolve_shift(shift: object, info: ModelInfo) -> bool:
    """A request's `"shift"`: true unless it says false, or the family cannot shift."""
    if isinstance(shift, bool):
        return shift
    return info.family not in NO_SHIFT_FAMILIES


def shift_cut(num_ctx: int) -> tuple[int, int]:
    """(kept head, tokens left) of a prompt shifted into `num_ctx`: the head
    stays, then half of the rest is dropped and the tail follows."""
    keep = max(0, min(KEEP_TOKENS, num_ctx - 1))
    return keep, num_ctx - max((num_ctx - keep) // 2, 1)


def fit_prompt(prompt: TokenSeq, num_ctx: int, shift: bool, config: EmulatorConfig) -> Fitted:
    """The prompt tokens actually evaluated, or the 400 for a prompt that cannot shift.
    A shifted prompt is its head and its tail: only the head can still match a slot."""
    count = token_count(prompt)
    if count <= num_ctx - 1 or num_ctx <= 1:
        return count, prompt
    if not shift and at_least(config, PROMPT_REFUSAL_SINCE):
        raise ApiError(400, PROMPT_TOO_LONG)
    keep, left = shift_cut(num_ctx)
    return left, token_prefix(prompt, keep) + token_suffix(prompt, left - keep)


def chat_fit(turns: Sequence[tuple[object, str]], prompt: TokenSeq, shift: bool, config: EmulatorConfig) -> Fit:
    """The prompt fitter of a chat whose (role, content) `turns` render as `prompt`:
    whole messages dropped oldest first (system ones and the last one always
    kept) and the rest rendered again, before the prompt itself is cut."""

    def fit(num_ctx: int) -> Fitted:
        count = token_count(prompt)
        if count <= num_ctx - 1:
            return count, prompt  # the usual case: nothing to drop or cut
        sizes = [message_size(content) for _, content in turns]
        total = sum(sizes) + ANSWER_HEADER_TOKENS
        first = 0
        while total > num_ctx and first < len(turns) - 1:
            if turns[first][0] != "system":
                total -= sizes[first]
            first += 1
        if first:
            kept = [turn for turn in turns[:first] if turn[0] == "system"]
            prompt_now = render_chat([*kept, *turns[first:]])
        else:
            prompt_now = prompt
        return fit_prompt(prompt_now, num_ctx, shift, config)

    return fit


def prompt_fit(prompt: TokenSeq, shift: bool, config: EmulatorConfig) -> Fit:
    """The fitter of a single rendered prompt (/api/generate, /v1/completions)."""
    return lambda num_ctx: fit_prompt(prompt, num_ctx, shift, config)


def embed_fit(counts: Sequence[int], truncate: bool, config: EmulatorConfig) -> Fit:
    """The fitter of an embedding batch: each input is cut to the window, or
    refused. Embeddings keep nothing in a slot, so there are no tokens to match."""

    def fit(num_ctx: int) -> Fitted:
        limit = num_ctx - EMBED_SPECIAL_TOKENS
        if not truncate and any(count > limit for count in counts):
            refused = INPUT_TOO_LONG if at_least(config, EMBED_REFUSAL_SINCE) else LEGACY_INPUT_TOO_LONG
            raise ApiError(400, refused)
        return sum(min(count, max(limit, 0)) for count in counts), None

    return fit
