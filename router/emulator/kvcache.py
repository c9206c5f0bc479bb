"""Each runner slot's cached tokens, and which slot a request gets.

A loaded model has `num_parallel` slots, as llama-server has; each keeps the
tokens of its last request (prompt and generated answer), which is what its
KV cache holds. A request is given a slot once one is free (the FIFO wait is
`slots.Slots`), chosen among the free ones the way llama-server chooses:

- the slot whose cached tokens share the longest common prefix with the
  prompt, if that prefix is more than `similarity` of the prompt (llama-server's
  `--slot-prompt-similarity`; slots with nothing cached are not candidates);
- otherwise the least recently used free slot (a never-used one first).

The request then processes only the prompt tokens past the prefix it shares
with its slot, whichever way the slot was picked, and at least one (the
last prompt token is always evaluated again to get the next token's
logits). A request without a token sequence (embeddings) reuses nothing and
leaves its slot empty.
"""

from __future__ import annotations

from router.emulator.tokens import TokenSeq, common_prefix, token_count


class CachedSlot:
    __slots__ = ("busy", "last_used", "tokens")

    def __init__(self) -> None:
        self.tokens: TokenSeq = b""
        self.last_used = -1  # release order; -1 = never used, so first in line
        self.busy = False


class PromptCache:
    """The slots of one runner; dropped with it, so a (re)load starts empty."""

    __slots__ = ("_releases", "similarity", "slots")

    def __init__(self, size: int, similarity: float) -> None:
        self.slots = [CachedSlot() for _ in range(size)]
        self.similarity = similarity
        self._releases = 0

    def take(self, prompt: TokenSeq | None) -> tuple[CachedSlot, int]:
        """A free slot for `prompt` (the caller holds a `Slots` permit) and the
        number of prompt tokens it already holds."""
        free = [slot for slot in self.slots if not slot.busy]
        chosen: CachedSlot | None = None
        shared = 0
        if prompt and self.similarity > 0:
            length = token_count(prompt)
            best = 0.0
            for slot in free:
                if not slot.tokens:
                    continue
                common = common_prefix(slot.tokens, prompt)
                share = common / length
                if share > best and share > self.similarity:
                    chosen, best, shared = slot, share, common
        if chosen is None:
            chosen = min(free, key=lambda slot: slot.last_used)
            shared = common_prefix(chosen.tokens, prompt) if prompt and chosen.tokens else 0
        chosen.busy = True
        if prompt:
            shared = min(shared, token_count(prompt) - 1)
        return chosen, shared

    def give_back(self, slot: CachedSlot, tokens: TokenSeq) -> None:
        """The request is over: `tokens` is what the slot now holds."""
        slot.tokens = tokens
        slot.busy = False
        self._releases += 1
        slot.last_used = self._releases

    def clear(self) -> None:
        for slot in self.slots:
            slot.tokens = b""
