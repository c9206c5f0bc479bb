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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from router.emulator.config import EmulatorConfig
from router.emulator.errors import ApiError
from router.emulator.store import ModelInfo
from router.emulator.text import MESSAGE_OVERHEAD_TOKENS, PROMPT_OVERHEAD_TOKENS, count_tokens
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

Fit = Callable[[int], int]


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


def shift_limit(num_ctx: int) -> int:
    """How many prompt tokens survive a context shift: the kept head plus the
    tail, after half of the rest is dropped."""
    if num_ctx <= 1:
        return 0
    keep = max(0, min(KEEP_TOKENS, num_ctx - 1))
    return num_ctx - max((num_ctx - keep) // 2, 1)


def fit_prompt(tokens: int, num_ctx: int, shift: bool, config: EmulatorConfig) -> int:
    """The prompt tokens actually evaluated, or the 400 for a prompt that cannot shift."""
    if tokens <= num_ctx - 1 or num_ctx <= 1:
        return tokens
    if not shift and at_least(config, PROMPT_REFUSAL_SINCE):
        raise ApiError(400, PROMPT_TOO_LONG)
    return shift_limit(num_ctx)


def chat_fit(messages: Sequence[tuple[str, str]], shift: bool, config: EmulatorConfig) -> Fit:
    """The prompt fitter of a chat turn given as (role, text) pairs: whole
    messages dropped oldest first (system ones and the last one always kept)
    before the prompt itself is cut. Counts as text.prompt_token_count does."""

    def fit(num_ctx: int) -> int:
        roles = [role for role, _ in messages]
        counts = [count_tokens(text) + MESSAGE_OVERHEAD_TOKENS for _, text in messages]
        total = sum(counts) + PROMPT_OVERHEAD_TOKENS
        if total <= num_ctx - 1:
            return total  # the usual case: nothing to drop or cut
        first = 0
        while total > num_ctx and first < len(counts) - 1:
            if roles[first] != "system":
                total -= counts[first]
            first += 1
        return fit_prompt(total, num_ctx, shift, config)

    return fit


def prompt_fit(tokens: int, shift: bool, config: EmulatorConfig) -> Fit:
    """The fitter of a single prompt (/api/generate, /v1/completions)."""
    return lambda num_ctx: fit_prompt(tokens, num_ctx, shift, config)


def embed_fit(counts: Sequence[int], truncate: bool, config: EmulatorConfig) -> Fit:
    """The fitter of an embedding batch: each input is cut to the window, or refused."""

    def fit(num_ctx: int) -> int:
        limit = num_ctx - EMBED_SPECIAL_TOKENS
        if not truncate and any(count > limit for count in counts):
            refused = INPUT_TOO_LONG if at_least(config, EMBED_REFUSAL_SINCE) else LEGACY_INPUT_TOO_LONG
            raise ApiError(400, refused)
        return sum(min(count, max(limit, 0)) for count in counts)

    return fit
