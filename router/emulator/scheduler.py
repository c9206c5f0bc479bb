"""Model runners and the scheduler (docs/ollama-wire.md §7.2-7.5).

- A loaded model is a Runner with `num_parallel` slots (1 for embedding
  models); requests beyond that wait FIFO without limit inside the runner.
- Requests that need a load, a reload or an eviction go through the
  scheduler queue: one load at a time server-wide, at most `max_queue`
  requests waiting behind it, the next one gets the exact 503.
- Keep-alive is sticky per runner; the idle timer starts when the runner's
  last request ends; keep_alive 0 unloads as soon as the runner is idle.
- A request whose load-time options (num_ctx, num_batch, num_gpu, main_gpu,
  use_mmap, num_thread; defaults filled in) or context shift differ from the
  runner's forces an unload + reload once the runner is idle, like upstream's
  needsReload (num_ctx and shift as resolved by window.py, docs/ollama-wire-2026.md §7.2).
- At `max_loaded_models` a load evicts a runner: an idle one with the
  shortest keep-alive (then by name), else the shortest keep-alive one once
  its requests have finished.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from router.emulator.config import FOREVER_SECONDS, EmulatorConfig
from router.emulator.errors import ApiError, busy
from router.emulator.faults import FaultBook
from router.emulator.slots import Slots
from router.emulator.stats import Stats
from router.emulator.store import ModelInfo
from router.emulator.versions import SHIFT_RELOAD_SINCE, at_least
from router.emulator.window import default_num_ctx, resolve_num_ctx, resolve_shift

# Options fixed when a runner starts; changing any of them means a reload (4.6).
LOAD_OPTIONS = ("num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread")
Shape = tuple[object, ...]


def runner_shape(options: dict[str, Any] | None, num_ctx: int, shift: bool | None) -> Shape:
    """The load-time options of a request, num_ctx resolved first, the context shift last."""
    if not options:
        return (num_ctx, None, None, None, None, None, shift)
    return (num_ctx, *(options.get(key) for key in LOAD_OPTIONS[1:]), shift)


class Runner:
    """One loaded model."""

    __slots__ = (
        "_idle_waiters",
        "_timer",
        "gone",
        "idle_deadline",
        "in_flight",
        "info",
        "keep_alive",
        "parallel",
        "shape",
        "slots",
        "unload_requested_at",
        "unloading",
    )

    def __init__(self, info: ModelInfo, shape: Shape, parallel: int, keep_alive: float) -> None:
        self.info = info
        self.shape = shape
        self.parallel = 1 if info.embedding else parallel
        self.slots = Slots(self.parallel)
        self.in_flight = 0
        self.keep_alive = keep_alive
        self.idle_deadline: float | None = None  # wall clock; None until first idle
        self.unloading = False  # evicted or asked to unload: takes no new requests
        self.unload_requested_at: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        # futures of evictions waiting for this runner to go idle (made only then:
        # an Event set/cleared on every request would cost the hot path)
        self._idle_waiters: list[asyncio.Future[None]] = []
        self.gone = asyncio.Event()

    @property
    def context_length(self) -> int:
        return int(self.shape[0])  # type: ignore[call-overload]

    def expires_at(self, now: float) -> float:
        """What /api/ps shows (7.3)."""
        if self.unload_requested_at is not None:
            return self.unload_requested_at
        if math.isinf(self.keep_alive):
            return now + FOREVER_SECONDS
        if self.idle_deadline is None:
            return now + self.keep_alive
        return self.idle_deadline

    async def wait_idle(self) -> None:
        if self.in_flight == 0:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._idle_waiters.append(waiter)
        await waiter

    def _became_idle(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class Scheduler:
    def __init__(self, config: EmulatorConfig, stats: Stats, faults: FaultBook) -> None:
        self.config = config
        self.stats = stats
        self.faults = faults
        self.runners: dict[str, Runner] = {}
        self.pending = 0  # requests waiting behind the load in progress
        self._load_lock = asyncio.Lock()
        self._default_keep_alive = config.default_keep_alive
        self._default_num_ctx = default_num_ctx(config)
        self._shift_reloads = at_least(config, SHIFT_RELOAD_SINCE)
        self._default_shapes: dict[str, Shape] = {}  # model key -> shape of a request that sets nothing

    # -- acquiring and releasing ---------------------------------------------------

    def shape(self, info: ModelInfo, options: dict[str, Any] | None, shift: object = None) -> Shape:
        if not options and shift is None:  # the hot path: a request that sets nothing load-time
            shape = self._default_shapes.get(info.key)
            if shape is None:
                shape = self._default_shapes[info.key] = self._shape(info, None, None)
            return shape
        return self._shape(info, options, shift)

    def _shape(self, info: ModelInfo, options: dict[str, Any] | None, shift: object) -> Shape:
        num_ctx = resolve_num_ctx(options, self._default_num_ctx, info)
        return runner_shape(options, num_ctx, resolve_shift(shift, info) if self._shift_reloads else None)

    def try_acquire(
        self, info: ModelInfo, keep_alive: float | None, options: dict[str, Any] | None = None, shift: object = None
    ) -> Runner | None:
        """The await-free fast path: a loaded runner that fits, with this request counted in it."""
        runner = self.runners.get(info.key)
        if runner is not None and not runner.unloading and runner.shape == self.shape(info, options, shift):
            self._enter(runner, keep_alive)
            return runner
        return None

    async def acquire(
        self, info: ModelInfo, keep_alive: float | None, options: dict[str, Any] | None = None, shift: object = None
    ) -> Runner:
        """A runner for `info` with this request counted in it (not yet a slot)."""
        runner = self.try_acquire(info, keep_alive, options, shift)
        if runner is not None:
            return runner
        shape = self.shape(info, options, shift)
        if self.pending >= self.config.max_queue:
            raise busy()
        self.pending += 1
        entered = False
        try:
            async with self._load_lock:
                self.pending -= 1
                entered = True
                runner = await self._load(info, keep_alive, shape)
                self._enter(runner, keep_alive)
                return runner
        finally:
            if not entered:
                self.pending -= 1

    def release(self, runner: Runner) -> None:
        runner.in_flight -= 1
        if runner.in_flight:
            return
        if runner._idle_waiters:
            runner._became_idle()
        if runner.unloading or runner.keep_alive == 0:
            self._unload(runner)
            return
        if math.isinf(runner.keep_alive):
            runner.idle_deadline = time.time() + FOREVER_SECONDS
            return
        runner.idle_deadline = time.time() + runner.keep_alive
        # One lazy timer per runner instead of arming/cancelling one per request
        # (hot path): a timer that fires early just re-arms for the new deadline.
        loop = asyncio.get_running_loop()
        due = loop.time() + runner.keep_alive
        timer = runner._timer
        if timer is not None and timer.when() > due:
            timer.cancel()  # the keep-alive got shorter: the pending one is too late
            timer = None
        if timer is None:
            runner._timer = loop.call_at(due, self._expire, runner)

    def request_unload(self, info: ModelInfo) -> None:
        """The empty-prompt keep_alive 0 request (4.4): unload now or when idle."""
        runner = self.runners.get(info.key)
        if runner is None:
            return
        runner.unloading = True
        runner.unload_requested_at = time.time()
        if runner.in_flight == 0:
            self._unload(runner)

    def loaded(self) -> list[Runner]:
        return list(self.runners.values())

    async def close(self) -> None:
        for runner in list(self.runners.values()):
            if runner._timer is not None:
                runner._timer.cancel()

    # -- internals ------------------------------------------------------------------

    def _enter(self, runner: Runner, keep_alive: float | None) -> None:
        runner.in_flight += 1
        if keep_alive is not None:  # sticky: only an explicit value changes it
            runner.keep_alive = keep_alive

    async def _load(self, info: ModelInfo, keep_alive: float | None, shape: Shape) -> Runner:
        existing = self.runners.get(info.key)
        if existing is not None:
            if not existing.unloading and existing.shape == shape:
                return existing  # loaded by the request ahead of us
            # Unloading, or loaded with other load-time options: wait until it is gone.
            existing.unloading = True
            if existing.in_flight == 0:
                self._unload(existing)
            await existing.gone.wait()
        while len(self.runners) >= self.config.max_loaded:
            await self._evict_one()
        fault = self.faults.for_load(info.key)
        if fault is not None:
            raise ApiError(fault.status, fault.message)
        if self.config.load_time > 0:
            # Bound to this request: a disconnect cancels the sleep and the
            # next waiter starts a fresh load (1.5).
            await asyncio.sleep(self.config.load_time)
        runner = Runner(
            info,
            shape,
            self.config.slots_per_model,
            self._default_keep_alive if keep_alive is None else keep_alive,
        )
        self.runners[info.key] = runner
        self.stats.loads += 1
        return runner

    async def _evict_one(self) -> None:
        runners = list(self.runners.values())
        idle = [r for r in runners if r.in_flight == 0]
        pool = idle or runners
        victim = min(pool, key=lambda r: (r.keep_alive, r.info.key))
        victim.unloading = True
        if victim.in_flight:
            await victim.wait_idle()
        if self.runners.get(victim.info.key) is victim:
            self._unload(victim)

    def _expire(self, runner: Runner) -> None:
        runner._timer = None
        if runner.in_flight or self.runners.get(runner.info.key) is not runner:
            return  # busy: its release arms the timer again
        if math.isinf(runner.keep_alive) or runner.idle_deadline is None:
            return
        remaining = runner.idle_deadline - time.time()
        if remaining > 0.001:
            runner._timer = asyncio.get_running_loop().call_later(remaining, self._expire, runner)
            return
        self._unload(runner)

    def _unload(self, runner: Runner) -> None:
        if runner._timer is not None:
            runner._timer.cancel()
            runner._timer = None
        if self.runners.get(runner.info.key) is runner:
            del self.runners[runner.info.key]
            self.stats.unloads += 1
        runner.gone.set()
