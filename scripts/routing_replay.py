"""Replay a trace (scripts/routing_trace.py) against one side, open-loop: what a user waits.

Every session starts at its arrival time; its turns follow one another, each
sent after the previous answer and the turn's pause, resending the whole
conversation (the previous answers as the side streamed them). Requests are
OpenAI chat completions, streamed: the time to first token is the time until
the first event that carries answer text.

Sessions already under way when a run starts (those that arrived up to
`prestart` real seconds earlier) join at the turn they would be at, resending
their history: the run starts near steady state, and its warm-up only has to
absorb those first turns, which no cache holds. A run has a warm-up, then a
measured window; no request is sent after it. A
request sent in the window counts for the time to first token; one still
without a first token `drain` seconds after the window counts with the time it
had waited (a lower bound: a side that falls behind is not flattered). A
request whose answer ended inside the window counts as completed.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from routing_trace import Session

JSON_HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-routing-bench"}  # LiteLLM wants a key


@dataclass(frozen=True, slots=True)
class Pace:
    """Real seconds of the trace to wall seconds of this run."""

    requests_per_second: float  # real time: the load (a share of the fleet's capacity)
    time_scale: float  # the emulators run this many times faster than the real rates
    prestart: float = 0.0  # real seconds of sessions already under way when the run starts

    def arrival(self, session: Session) -> float:
        """Wall seconds after the start; negative: it began before the run."""
        return (session.arrival / self.requests_per_second - self.prestart) / self.time_scale

    def pause(self, seconds: float) -> float:
        return seconds / self.time_scale


@dataclass(slots=True)
class Outcome:
    sent: float
    kind: str  # the session's: agent, chat, one-shot
    prompt_tokens: int  # the whole prompt (the trace's count)
    processed: int | None = None  # what the container evaluated (its usage.prompt_tokens)
    first: float | None = None
    done: float | None = None
    error: str | None = None


@dataclass(slots=True)
class RunResult:
    warmup: float
    seconds: float
    drain: float
    outcomes: list[Outcome] = field(default_factory=list)
    sessions_started: int = 0

    @property
    def window_end(self) -> float:
        return self.warmup + self.seconds

    def ttfts(self) -> list[float]:
        """Seconds to first token of the requests sent in the window (still waiting: the time they waited)."""
        cutoff = self.window_end + self.drain
        return [
            (o.first if o.first is not None else cutoff) - o.sent
            for o in self.outcomes
            if self.warmup <= o.sent < self.window_end and (o.first is not None or o.error is None)
        ]

    def completed_per_second(self) -> float:
        done = sum(1 for o in self.outcomes if o.done is not None and self.warmup <= o.done < self.window_end)
        return done / self.seconds

    def errors(self) -> int:
        return sum(1 for o in self.outcomes if o.error is not None)

    def first_tokens(self) -> int:
        return sum(1 for o in self.outcomes if o.first is not None)

    def waiting(self) -> int:
        """Sent in the window, still without a first token when the run ended."""
        return sum(1 for o in self.outcomes if o.first is None and o.error is None and self.warmup <= o.sent < self.window_end)


class Replay:
    """`schedule(session)`: when each of its turns is due, in real seconds after its first
    (routing_trace.Fleet.schedule); a session that began before the run joins at its next turn."""

    def __init__(
        self, trace: list[Session], urls: dict[str, str], pace: Pace, result: RunResult, schedule: Callable[[Session], list[float]],
    ) -> None:
        self.trace = trace
        self.urls = urls  # by model: the side's base URL for it
        self.pace = pace
        self.result = result
        self.schedule = schedule
        self.started = 0.0

    def now(self) -> float:
        return time.perf_counter() - self.started

    async def run(self, progress: Callable[[str], None] | None = None) -> RunResult:
        result = self.result
        self.started = time.perf_counter()
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            tasks = [
                asyncio.create_task(self.session(http, s))
                for s in self.trace
                if self.pace.arrival(s) < result.window_end
            ]
            result.sessions_started = len(tasks)
            ticker = asyncio.create_task(self._tick(progress)) if progress is not None else None
            await asyncio.sleep(max(0.0, result.window_end - self.now()))
            deadline = result.window_end + result.drain
            while self.now() < deadline:  # the first tokens of what was sent in the window
                if all(o.first is not None or o.error is not None for o in result.outcomes):
                    break
                await asyncio.sleep(0.05)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if ticker is not None:
                ticker.cancel()
                await asyncio.gather(ticker, return_exceptions=True)
        return result

    async def _tick(self, progress: Callable[[str], None]) -> None:
        while True:
            await asyncio.sleep(5)
            outcomes = self.result.outcomes
            pending = sum(1 for o in outcomes if o.done is None and o.error is None)
            done = sum(1 for o in outcomes if o.done is not None)
            progress(f"{self.now():5.0f}s  sent {len(outcomes)}  done {done}  in flight {pending}  errors {self.result.errors()}")

    def joining(self, session: Session) -> tuple[float, int, list[dict[str, str]]]:
        """When the session sends its first request of this run (wall seconds), which turn that is,
        and the conversation so far. One under way already resends its history, its earlier
        answers written here (no cache holds them: as after a restart of the fleet)."""
        at = self.pace.arrival(session)
        if at >= 0:
            return at, 0, []
        behind = -at * self.pace.time_scale
        offsets = self.schedule(session)
        done = sum(1 for offset in offsets if offset <= behind)  # turns sent before the run
        if done >= len(offsets):
            return 0.0, done, []
        messages: list[dict[str, str]] = []
        for turn in session.turns[:done]:
            messages += [*turn.new_messages, {"role": "assistant", "content": " ".join(["done"] * turn.max_tokens)}]
        return (offsets[done] - behind) / self.pace.time_scale, done, messages

    async def session(self, http: aiohttp.ClientSession, session: Session) -> None:
        at, first, messages = self.joining(session)
        if first >= len(session.turns):
            return
        await asyncio.sleep(max(0.0, at - self.now()))
        url = self.urls[session.model] + "/v1/chat/completions"
        for index, turn in enumerate(session.turns[first:]):
            if turn.pause and index:
                await asyncio.sleep(self.pace.pause(turn.pause))
            if self.now() >= self.result.window_end:
                return
            messages += turn.new_messages
            body = orjson.dumps({
                "model": session.model, "messages": messages, "stream": True, "max_tokens": turn.max_tokens,
                "stream_options": {"include_usage": True},
            })
            outcome = Outcome(self.now(), session.kind, turn.prompt_tokens)
            self.result.outcomes.append(outcome)
            answer = await self.request(http, url, body, outcome)
            if answer is None:
                return
            messages.append({"role": "assistant", "content": answer})

    async def request(self, http: aiohttp.ClientSession, url: str, body: bytes, outcome: Outcome) -> str | None:
        parts: list[str] = []
        try:
            async with http.post(url, data=body, headers=JSON_HEADERS) as response:
                if response.status != 200:
                    outcome.error = f"HTTP {response.status}: {(await response.read())[:200]!r}"
                    return None
                async for line in response.content:
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        break
                    event: Any = orjson.loads(data)
                    if "error" in event:
                        outcome.error = f"stream error: {str(event['error'])[:200]}"
                        return None
                    usage = event.get("usage")
                    if usage:
                        outcome.processed = usage.get("prompt_tokens")
                    for choice in event.get("choices") or ():
                        content = (choice.get("delta") or {}).get("content")
                        if content:
                            if outcome.first is None:
                                outcome.first = self.now()
                            parts.append(content)
        except (aiohttp.ClientError, OSError, orjson.JSONDecodeError) as exc:
            outcome.error = f"{type(exc).__name__}: {exc}"
            return None
        if outcome.first is None:
            outcome.error = "no answer text"
            return None
        outcome.done = self.now()
        return "".join(parts)


def progress_line(prefix: str) -> Callable[[str], None]:
    def emit(text: str) -> None:
        print(f"    {prefix} {text}", file=sys.stderr, flush=True)

    return emit

