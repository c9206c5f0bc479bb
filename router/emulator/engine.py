"""One inference request's life: fault, scheduling, slot, pacing, metrics (7.5).

Handlers build a `Job`, then either `await engine.complete(job)` (non-streamed:
no per-token awaits at all when tokens_per_second is 0) or iterate
`engine.stream(job)` (streamed: one token at a time, paced). Both raise
ApiError before the first token and StreamCut after it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from router.emulator.config import EmulatorConfig
from router.emulator.errors import ApiError, StreamCut
from router.emulator.faults import Fault
from router.emulator.scheduler import Runner, Scheduler
from router.emulator.store import ModelInfo
from router.emulator.window import Fit

# Prompt processing is this many times faster than generation (typical on GPUs).
PROMPT_SPEEDUP = 10.0


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
    shift: object = None  # the request's "shift" (a load-time setting, window.py)
    fit: Fit | None = None  # num_ctx -> prompt tokens evaluated; may refuse (window.py)
    start_ns: int = field(default_factory=time.monotonic_ns)
    metrics: Metrics = field(default_factory=Metrics)
    # set while running
    runner: Runner | None = None
    has_slot: bool = False
    loaded_ns: int = 0
    eval_start_ns: int = 0

    def thinking_text(self) -> str:
        return "".join(self.tokens[: self.thinking])

    def content_text(self) -> str:
        return "".join(self.tokens[self.thinking :])


class Engine:
    def __init__(self, config: EmulatorConfig, scheduler: Scheduler) -> None:
        self.config = config
        self.scheduler = scheduler
        self.tps = config.tokens_per_second

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
            job.prompt_tokens = job.fit(runner.context_length)
        if not runner.slots.try_acquire():
            await runner.slots.acquire()
        job.has_slot = True
        if fault is not None and fault.kind == "slow" and fault.delay > 0:
            await asyncio.sleep(fault.delay)
        slot_ns = time.monotonic_ns()
        if self.tps > 0:
            await asyncio.sleep(job.prompt_tokens / (self.tps * PROMPT_SPEEDUP))
        job.eval_start_ns = time.monotonic_ns()
        metrics = job.metrics
        metrics.load_duration = max(1, job.loaded_ns - job.start_ns)
        metrics.prompt_eval_count = job.prompt_tokens
        metrics.prompt_eval_duration = max(1, job.eval_start_ns - slot_ns)

    def finish(self, job: Job, emitted: int) -> None:
        """Stop the clocks and give the slot and the runner back."""
        end = time.monotonic_ns()
        metrics = job.metrics
        metrics.eval_count = emitted
        metrics.eval_duration = max(1, end - job.eval_start_ns) if job.eval_start_ns else 0
        metrics.total_duration = max(1, end - job.start_ns)
        self.release(job)

    def release(self, job: Job) -> None:
        runner = job.runner
        if runner is None:
            return
        job.runner = None
        if job.has_slot:
            job.has_slot = False
            runner.slots.release()
        self.scheduler.release(runner)

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
            if self.tps > 0 and emitted:
                await asyncio.sleep(emitted / self.tps)
            if cut is not None:
                assert job.fault is not None
                raise ApiError(job.fault.status, job.fault.message, runner=True)
            self.finish(job, emitted)
        finally:
            self.release(job)

    async def stream(self, job: Job) -> AsyncIterator[str]:
        """Streamed: tokens at `tokens_per_second`, each due at an absolute time
        so pacing does not drift; ends by finishing the job (metrics set)."""
        try:
            await self.start(job)
            cut = self._cut_point(job)
            if cut == 0:
                assert job.fault is not None
                raise ApiError(job.fault.status, job.fault.message, runner=True)
            tokens = job.tokens if cut is None else job.tokens[:cut]
            if self.tps > 0:
                loop = asyncio.get_running_loop()
                step = 1.0 / self.tps
                begin = loop.time()
                for index, token in enumerate(tokens):
                    delay = begin + (index + 1) * step - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    yield token
            else:
                for token in tokens:
                    yield token
            if cut is not None:
                assert job.fault is not None
                raise StreamCut(job.fault.message)
            self.finish(job, len(tokens))
        finally:
            self.release(job)
