"""One inference request's life: fault, scheduling, window, slot, pacing, metrics (7.5).

Handlers build a `Job`, then either `await engine.complete(job)` (non-streamed:
no per-token awaits at all when tokens_per_second is 0) or iterate
`engine.stream(job)` (streamed: one token at a time, paced). Both raise
ApiError before the first token and StreamCut after it.

Timing, as a GPU running llama-server would spend it:
- prompt: of the prompt the runner's context window lets through (window.py),
  only the tokens past what the request's slot already holds (kvcache.py),
  at `prompt_rate` tokens/s;
- answer: one token per `1/tokens_per_second` s while the stream decodes
  alone, slower while other slots of the runner decode too (throughput.py).
When a rate is set, `prompt_eval_duration` and `eval_duration` report that
modelled time (the sleeps follow it), so they are exact and repeatable;
`total_duration` is the wall clock, at least their sum with `load_duration`.
With a rate of 0 nothing sleeps and they are the measured nanoseconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from router.emulator.config import EmulatorConfig
from router.emulator.errors import ApiError, StreamCut
from router.emulator.faults import Fault
from router.emulator.kvcache import CachedSlot
from router.emulator.scheduler import Runner, Scheduler
from router.emulator.store import ModelInfo
from router.emulator.throughput import token_delays
from router.emulator.tokens import TokenSeq, token_prefix, tokenize
from router.emulator.window import Fit

NS = 1_000_000_000


@dataclass(slots=True)
class Metrics:
    total_duration: int = 0
    load_duration: int = 0
    prompt_eval_count: int = 0
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0

    def native(self) -> dict[str, int]:
        """The six metrics in Go struct order, zero ones omitted (1.7)."""
        return {k: v for k, v in (
            ("total_duration", self.total_duration),
            ("load_duration", self.load_duration),
            ("prompt_eval_count", self.prompt_eval_count),
            ("prompt_eval_duration", self.prompt_eval_duration),
            ("eval_count", self.eval_count),
            ("eval_duration", self.eval_duration),
        ) if v}


@dataclass(slots=True)
class Job:
    info: ModelInfo
    keep_alive: float | None
    prompt_tokens: int
    tokens: tuple[str, ...]
    done_reason: str  # "stop" or "length"
    fault: Fault | None
    options: dict[str, Any] | None = None  # native options (load-time ones pick the runner)
    thinking: int = 0  # the first `thinking` tokens are reasoning, the rest the answer
    tool_calls: list[dict[str, Any]] | None = None  # native tool calls sent after the tokens
    # The rendered prompt (tokens.py render_*): what the slot cache matches and keeps.
    # None (embeddings) = prompt_tokens to process, nothing reused or kept.
    prompt: TokenSeq | None = None
    shift: object = None  # the request's "shift" (a load-time setting, window.py)
    # num_ctx -> (prompt_tokens, prompt) as the window lets them through; may
    # refuse (window.py). Without one, the prompt is evaluated whole.
    fit: Fit | None = None
    start_ns: int = field(default_factory=time.monotonic_ns)
    metrics: Metrics = field(default_factory=Metrics)
    # set while running
    runner: Runner | None = None
    has_slot: bool = False
    slot: CachedSlot | None = None
    reused: int = 0  # prompt tokens found in the slot's cache
    loaded_ns: int = 0
    eval_start_ns: int = 0
    decoding: bool = False  # counted in runner.decoding
    emitted: int = 0  # tokens generated so far
    due: float = 0.0  # loop time the next token is due (paced decoding)
    eval_ns: int = 0  # modelled decoding time so far (paced decoding)

    def thinking_text(self) -> str:
        return "".join(self.tokens[: self.thinking])

    def content_text(self) -> str:
        return "".join(self.tokens[self.thinking :])


class Engine:
    def __init__(self, config: EmulatorConfig, scheduler: Scheduler) -> None:
        self.config = config
        self.scheduler = scheduler
        self.stats = scheduler.stats
        self.tps = config.tokens_per_second
        self.prompt_rate = config.prompt_rate
        # seconds per token of one stream, by how many of its runner's slots decode
        self.delays = token_delays(self.tps, config.decode_scaling, config.slots_per_model) if self.tps > 0 else []

    # -- the pieces ---------------------------------------------------------------

    async def preflight(self, fault: Fault | None) -> None:
        """Faults that strike before the model is even scheduled."""
        if fault is None:
            return
        if fault.kind == "busy":
            raise ApiError(fault.status, fault.message)
        if fault.kind == "error":
            raise ApiError(fault.status, fault.message, runner=True)
        if fault.kind == "hang":
            # Never answer; only the client leaving (task cancelled) ends it.
            await asyncio.Event().wait()

    async def load_only(
        self,
        info: ModelInfo,
        keep_alive: float | None,
        fault: Fault | None,
        options: dict[str, Any] | None = None,
        shift: object = None,
    ) -> None:
        """The empty-prompt load request (4.4): schedule, apply keep-alive, done."""
        await self.preflight(fault)
        runner = await self.scheduler.acquire(info, keep_alive, options, shift)
        try:
            if fault is not None and fault.kind == "slow":
                await asyncio.sleep(fault.delay)
            if fault is not None and fault.kind == "cut":
                raise ApiError(fault.status, fault.message, runner=True)
        finally:
            self.scheduler.release(runner)

    async def start(self, job: Job) -> None:
        """Schedule, take a slot, evaluate the prompt: the first token is next."""
        fault = job.fault
        if fault is not None:
            await self.preflight(fault)
        # Await-free when the model is loaded and a slot is free (the hot path).
        runner = self.scheduler.try_acquire(job.info, job.keep_alive, job.options, job.shift)
        if runner is None:
            runner = await self.scheduler.acquire(job.info, job.keep_alive, job.options, job.shift)
        job.runner = runner
        job.loaded_ns = time.monotonic_ns()
        if job.fit is not None:
            # The window decides what the prompt is (messages dropped, cut, or
            # refused) before the slot cache sees it: a cut prompt claims only
            # the prefix it still has.
            job.prompt_tokens, job.prompt = job.fit(runner.context_length)
        if not runner.slots.try_acquire():
            await runner.slots.acquire()
        job.has_slot = True
        job.slot, job.reused = runner.prompt_cache.take(job.prompt)
        if fault is not None and fault.kind == "slow" and fault.delay > 0:
            await asyncio.sleep(fault.delay)
        processed = job.prompt_tokens - job.reused
        self.stats.note_prompt(job.info.display, processed, job.reused)
        slot_ns = time.monotonic_ns()
        modelled = 0
        if self.prompt_rate > 0 and processed > 0:
            seconds = processed / self.prompt_rate
            modelled = max(1, round(seconds * NS))
            await asyncio.sleep(seconds)
        job.eval_start_ns = time.monotonic_ns()
        metrics = job.metrics
        metrics.load_duration = max(1, job.loaded_ns - job.start_ns)
        metrics.prompt_eval_count = processed
        metrics.prompt_eval_duration = modelled or max(1, job.eval_start_ns - slot_ns)

    async def _next_token(self, job: Job) -> None:
        """Wait until the job's next token is decoded (paced decoding only)."""
        runner = job.runner
        assert runner is not None
        loop = asyncio.get_running_loop()
        if not job.decoding:
            job.decoding = True
            runner.decoding += 1
            job.due = loop.time()
        # The step is set by how many decode during it: the batch each token is part of.
        step = self.delays[min(runner.decoding, len(self.delays) - 1)]
        job.eval_ns += round(step * NS)
        job.due += step
        wait = job.due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        job.emitted += 1

    def finish(self, job: Job, emitted: int | None = None) -> None:
        """Stop the clocks and give the slot and the runner back."""
        end = time.monotonic_ns()
        if emitted is not None:
            job.emitted = emitted
        metrics = job.metrics
        metrics.eval_count = job.emitted
        if job.eval_ns:
            metrics.eval_duration = job.eval_ns
        else:
            metrics.eval_duration = max(1, end - job.eval_start_ns) if job.eval_start_ns else 0
        phases = metrics.load_duration + metrics.prompt_eval_duration + metrics.eval_duration
        metrics.total_duration = max(1, end - job.start_ns, phases)
        self.release(job)

    def release(self, job: Job) -> None:
        runner = job.runner
        if runner is None:
            return
        job.runner = None
        if job.decoding:
            job.decoding = False
            runner.decoding -= 1
        if job.slot is not None:
            runner.prompt_cache.give_back(job.slot, self._slot_tokens(job))
            job.slot = None
        if job.has_slot:
            job.has_slot = False
            runner.slots.release()
        self.scheduler.release(runner)

    @staticmethod
    def _slot_tokens(job: Job) -> TokenSeq:
        """What the job leaves in its slot: the prompt and what it generated, or,
        stopped during prompt evaluation, the part it had not overwritten yet."""
        if job.prompt is None:
            return b""
        if not job.eval_start_ns:
            return token_prefix(job.prompt, job.reused)
        if not job.emitted:
            return job.prompt
        return job.prompt + tokenize("".join(job.tokens[: job.emitted]))

    def _cut_point(self, job: Job) -> int | None:
        fault = job.fault
        if fault is not None and fault.kind == "cut":
            return min(fault.after_tokens, len(job.tokens))
        return None

    # -- the two ways to run a job ------------------------------------------------

    async def complete(self, job: Job) -> None:
        """Non-streamed: the whole answer at once (a cut fails the request, 500);
        read it from job.thinking_text() / job.content_text() afterwards."""
        try:
            await self.start(job)
            cut = self._cut_point(job)
            emitted = len(job.tokens) if cut is None else cut
            if self.tps > 0:
                for _ in range(emitted):
                    await self._next_token(job)
            else:
                job.emitted = emitted
            if cut is not None:
                assert job.fault is not None
                raise ApiError(job.fault.status, job.fault.message, runner=True)
            self.finish(job)
        finally:
            self.release(job)

    async def stream(self, job: Job) -> AsyncGenerator[str, None]:
        """Streamed: tokens as they are decoded, each due at an absolute time so
        pacing does not drift; ends by finishing the job (metrics set)."""
        try:
            await self.start(job)
            cut = self._cut_point(job)
            if cut == 0:
                assert job.fault is not None
                raise ApiError(job.fault.status, job.fault.message, runner=True)
            tokens = job.tokens if cut is None else job.tokens[:cut]
            if self.tps > 0:
                for token in tokens:
                    await self._next_token(job)
                    yield token
            else:
                for token in tokens:
                    job.emitted += 1
                    yield token
            if cut is not None:
                assert job.fault is not None
                raise StreamCut(job.fault.message)
            self.finish(job)
        finally:
            self.release(job)
