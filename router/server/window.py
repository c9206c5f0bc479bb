"""The last minute, per container and per model: what the console shows.

Fed once per request by the metrics observer, from what it already read of
the request's record (no per-chunk work). Each series keeps one slot of
counts per second for the last SPAN seconds (a slot is zeroed when its
second comes round again) and the most recent SAMPLES time-to-first-token
and generation-speed samples for the percentiles. Adding a request touches
at most four series, O(1); memory is bounded by the number of series, whose
names are catalog tags and container names only (never a client's text), and
series idle for a whole span are forgotten when read.

Reading (once a second, shared by every console) sums the slots and sorts the
samples still inside the span.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

SPAN = 60  # seconds
SAMPLES = 1024  # latest percentile samples kept per series (a busy series' percentiles cover its latest SAMPLES answers)

REQUESTS, ERRORS, FALLBACKS, COLD_LOADS, TOKENS = range(5)
FIELDS = 5


def percentile(ordered: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclass(frozen=True, slots=True)
class Figures:
    """One series over the span: counts, rates and percentiles."""

    requests: int
    errors: int  # answers with status 429 or >= 500, and streams that broke
    fallbacks: int  # per model: its requests a fallback served; per container: fallback answers it gave
    cold_loads: int
    tokens: int  # output tokens (Ollama's eval_count, the OpenAI usage's completion_tokens)
    requests_per_s: float
    tokens_per_s: float  # output tokens over the span: what the GPUs delivered
    ttft_p50: float | None  # seconds, streamed answers
    ttft_p95: float | None
    speed_p50: float | None  # one answer's generation speed (eval_count / eval_duration), tokens/s

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "fallbacks": self.fallbacks,
            "cold_loads": self.cold_loads,
            "tokens": self.tokens,
            "requests_per_s": round(self.requests_per_s, 3),
            "tokens_per_s": round(self.tokens_per_s, 1),
            "ttft_p50": _rounded(self.ttft_p50, 4),
            "ttft_p95": _rounded(self.ttft_p95, 4),
            "speed_p50": _rounded(self.speed_p50, 1),
        }


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _recent(samples: deque[tuple[float, float]], since: float) -> list[float]:
    """The values of samples taken after `since`; older ones (at the left: oldest first) are dropped for good."""
    while samples and samples[0][0] <= since:
        samples.popleft()
    return [value for _, value in samples]


class _Series:
    __slots__ = ("counts", "last", "seconds", "speed", "ttft")

    def __init__(self) -> None:
        self.seconds = [-1] * SPAN  # the second each slot counts
        self.counts = [[0] * FIELDS for _ in range(SPAN)]
        self.ttft: deque[tuple[float, float]] = deque(maxlen=SAMPLES)
        self.speed: deque[tuple[float, float]] = deque(maxlen=SAMPLES)
        self.last = -1  # the latest second anything was counted

    def slot(self, second: int) -> list[int]:
        index = second % SPAN
        counts = self.counts[index]
        if self.seconds[index] != second:
            self.seconds[index] = second
            counts[:] = (0,) * FIELDS
        self.last = second
        return counts


class Window:
    """Last-minute figures: the whole router, each container, each model."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.total = _Series()
        self.containers: dict[str, _Series] = {}
        self.models: dict[str, _Series] = {}

    def add(
        self,
        model: str,
        container: str,
        failed: bool,
        fallback_from: str | None,
        ttft: float | None,
        tokens: int,
        speed: float | None,
        cold: bool,
    ) -> None:
        """One answered request for `model` (a catalog tag; "" when none) on `container` ("" when none)."""
        now = self.clock()
        second = int(now)
        self._count(self.total, now, second, failed, ttft, tokens, speed, cold)
        if model:
            self._count(self._series(self.models, model), now, second, failed, ttft, tokens, speed, cold)
        if container:
            self._count(self._series(self.containers, container), now, second, failed, ttft, tokens, speed, cold)
        if fallback_from is not None:
            self.total.slot(second)[FALLBACKS] += 1
            if container:
                self.containers[container].slot(second)[FALLBACKS] += 1
            self._series(self.models, fallback_from).slot(second)[FALLBACKS] += 1

    @staticmethod
    def _series(table: dict[str, _Series], name: str) -> _Series:
        series = table.get(name)
        if series is None:
            series = table[name] = _Series()
        return series

    @staticmethod
    def _count(
        series: _Series, now: float, second: int, failed: bool, ttft: float | None, tokens: int, speed: float | None, cold: bool
    ) -> None:
        counts = series.slot(second)
        counts[REQUESTS] += 1
        if failed:
            counts[ERRORS] += 1
        if tokens:
            counts[TOKENS] += tokens
        if cold:
            counts[COLD_LOADS] += 1
        if ttft is not None:
            series.ttft.append((now, ttft))
        if speed is not None:
            series.speed.append((now, speed))

    def figures(self) -> dict[str, Any]:
        """{"seconds", "total", "containers": {name: figures}, "models": {tag: figures}} as plain dicts."""
        now = self.clock()
        self._forget_idle(int(now))
        return {
            "seconds": SPAN,
            "total": self._merge([self.total], now).as_dict(),
            "containers": {name: self._merge([s], now).as_dict() for name, s in self.containers.items()},
            "models": {tag: self._merge([s], now).as_dict() for tag, s in self.models.items()},
        }

    def combined(self, models: Iterable[str]) -> dict[str, Any]:
        """The figures of several models together (a console that sees only some models)."""
        series = [s for tag in models if (s := self.models.get(tag)) is not None]
        return self._merge(series, self.clock()).as_dict()

    def _forget_idle(self, second: int) -> None:
        for table in (self.containers, self.models):
            for name in [name for name, s in table.items() if s.last <= second - SPAN]:
                del table[name]

    def _merge(self, series: list[_Series], now: float) -> Figures:
        first = int(now) - SPAN + 1  # the oldest second still inside the span
        sums = [0] * FIELDS
        ttft: list[float] = []
        speed: list[float] = []
        since = now - SPAN
        for one in series:
            for index, second in enumerate(one.seconds):
                if second >= first:
                    for field, value in enumerate(one.counts[index]):
                        sums[field] += value
            ttft += _recent(one.ttft, since)
            speed += _recent(one.speed, since)
        ttft.sort()
        speed.sort()
        elapsed = max(1.0, min(float(SPAN), now - self.started))
        return Figures(
            requests=sums[REQUESTS],
            errors=sums[ERRORS],
            fallbacks=sums[FALLBACKS],
            cold_loads=sums[COLD_LOADS],
            tokens=sums[TOKENS],
            requests_per_s=sums[REQUESTS] / elapsed,
            tokens_per_s=sums[TOKENS] / elapsed,
            ttft_p50=percentile(ttft, 0.5),
            ttft_p95=percentile(ttft, 0.95),
            speed_p50=percentile(speed, 0.5),
        )
