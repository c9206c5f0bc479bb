#!/usr/bin/env python3
"""Chaos soak: the router under load while its containers die, freeze and fail.

Everything is a separate process on loopback: four emulators
(`python -m router.emulator`) and the router (`ollama-router serve` on a
generated catalog: `llama3.2:3b` on c1 and c2 falling back to `qwen2.5:7b` on
c3 and c4). For `--duration` seconds (default 240):

- `--clients` (30) clients send chats in a loop, mixing the OpenAI and Ollama
  APIs, streamed and not; a few leave mid-answer; after a 429 or 503 a client
  waits what `Retry-After` says, as the SDKs do. Each prompt carries a nonce,
  and the emulator's answer is seeded by model and prompt, so the client
  recomputes the exact answer it must get (`router.emulator.text`): any other
  text is a mixed answer (another client's, or nobody's).
- a chaos task disturbs at most two containers at a time: SIGKILL then a
  restart on the same port, SIGSTOP then SIGCONT (some longer than
  `stream_idle_timeout`), and every fault kind of `/_emulator/faults`
  (error, busy, hang, cut, slow, load_fail after an unload), each at least once.

At the end it clears every fault, revives every container, waits for the
router to settle, and prints one outcome table: requests, ok, 429, 503,
broken streams, mixed answers, other failures, lost capacity (requests the
router still counts in flight or queued), router RSS at start and end,
tracebacks in the router's log, ejections and fallbacks (`/router/status`
and `/metrics`, which must agree). Exit status 1 on lost capacity, a mixed
answer, a traceback, or counters that disagree.

    .venv/bin/python scripts/chaos.py                  # about 4 minutes
    .venv/bin/python scripts/chaos.py --duration 30    # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import secrets
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from router.catalog.names import parse_model_name
from router.emulator.text import answer_tokens

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import Proc, Stack, free_port, rss_mb, wait_http  # the benchmark's process helpers

REPO = Path(__file__).resolve().parent.parent

LLAMA, QWEN = "llama3.2:3b", "qwen2.5:7b"
CONTAINERS = {"c1": LLAMA, "c2": LLAMA, "c3": QWEN, "c4": QWEN}
RESPONSE_TOKENS = 16
STREAM_IDLE = 3.0
FAULT_KINDS = ("error", "busy", "hang", "cut", "slow", "load_fail")
ACTIONS = ("kill", "freeze", *FAULT_KINDS)
SETTLE_SECONDS = 60.0


def catalog_yaml(urls: dict[str, str]) -> str:
    return "\n".join([
        "version: 1",
        "defaults: {keep_alive: 24h, num_parallel: 4}",
        "router: {health_interval: 1s, probe_timeout: 1s, ttft_timeout: 5s, stream_idle_timeout: "
        f"{STREAM_IDLE:g}s, max_queue: 8, queue_timeout: 5s, failure_threshold: 3, base_ejection_time: 2s, "
        "max_ejection_time: 20s, load_timeout: 20s}",
        "containers:",
        *(f"  {name}: {{url: '{url}'}}" for name, url in urls.items()),
        "models:",
        f"  {LLAMA}: {{containers: [c1, c2], fallback: [{QWEN}], aliases: [gpt-4o-mini]}}",
        f"  {QWEN}: {{containers: [c3, c4]}}",
    ]) + "\n"


def expected_answer(model_tag: str, prompt: str) -> str:
    """What the emulator answers a one-message chat (router/emulator/answers.py)."""
    return "".join(answer_tokens(parse_model_name(model_tag).key, f"user\x1f{prompt}", None, RESPONSE_TOKENS))


# the containers --------------------------------------------------------------------------


@dataclass
class Container:
    name: str
    model: str
    port: int
    proc: Proc
    disturbed: bool = False  # killed, frozen or armed with a fault right now

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def emulator_argv(model: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "router.emulator", "--host", "127.0.0.1", "--port", str(port), "--model", model,
        "--tokens-per-second", "60", "--response-tokens", str(RESPONSE_TOKENS), "--num-parallel", "4",
        "--load-time", "0.3", "--keep-alive", "24h", "--no-pull",
    ]


class Fleet:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.containers: dict[str, Container] = {}
        self.generations = itertools.count(1)

    async def start(self) -> None:
        for name, model in CONTAINERS.items():
            port = free_port()
            self.containers[name] = Container(name, model, port, self.stack.spawn(name, emulator_argv(model, port)))
        await asyncio.gather(*(wait_http(c.url + "/") for c in self.containers.values()))

    async def restart(self, container: Container) -> None:
        proc = self.stack.spawn(f"{container.name}-{next(self.generations)}", emulator_argv(container.model, container.port))
        container.proc = proc
        await wait_http(container.url + "/")

    async def control(self, container: Container, method: str, path: str, body: Any = None) -> None:
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
                session.request(method, container.url + path, json=body) as response,
            ):
                await response.read()


# the chaos -------------------------------------------------------------------------------


@dataclass
class Chaos:
    fleet: Fleet
    rng: random.Random
    done: Counter[str] = field(default_factory=Counter)

    async def run(self, until: float) -> None:
        """Every action at least once (in a shuffled order), then at random; at most two at a time."""
        order = list(ACTIONS)
        self.rng.shuffle(order)
        running: set[asyncio.Task[None]] = set()
        while time.monotonic() < until - 10:
            quiet = [c for c in self.fleet.containers.values() if not c.disturbed]
            if len(quiet) > 2:
                action = order.pop(0) if order else self.rng.choice(ACTIONS)
                container = self.rng.choice(quiet)
                container.disturbed = True
                task = asyncio.create_task(self._act(action, container))
                running.add(task)
                task.add_done_callback(running.discard)
            await asyncio.sleep(self.rng.uniform(2.0, 5.0))
        await asyncio.gather(*running)

    async def _act(self, action: str, container: Container) -> None:
        try:
            self.done[action] += 1
            lasts = self.rng.uniform(3.0, 10.0)
            if action == "kill":
                os.kill(container.proc.pid, signal.SIGKILL)
                container.proc.popen.wait(5)
                await asyncio.sleep(lasts)
                await self.fleet.restart(container)
            elif action == "freeze":
                os.kill(container.proc.pid, signal.SIGSTOP)
                try:
                    await asyncio.sleep(lasts)  # often longer than stream_idle_timeout
                finally:
                    os.kill(container.proc.pid, signal.SIGCONT)
            else:
                fault: dict[str, Any] = {"kind": action, "count": -1}
                if action == "cut":
                    fault["after_tokens"] = self.rng.randint(1, RESPONSE_TOKENS // 2)
                elif action == "slow":
                    fault["delay"] = self.rng.uniform(0.5, 6.0)  # sometimes past ttft_timeout
                elif action == "error":
                    fault["status"] = self.rng.choice([500, 502])
                await self.fleet.control(container, "POST", "/_emulator/faults", fault)
                if action == "load_fail":  # a load must happen for it to bite: unload behind the router's back
                    await self.fleet.control(container, "POST", "/api/chat", {"model": container.model, "messages": [], "keep_alive": 0})
                await asyncio.sleep(lasts)
                await self.fleet.control(container, "DELETE", "/_emulator/faults")
        finally:
            container.disturbed = False


# the clients -----------------------------------------------------------------------------


@dataclass
class Outcomes:
    counts: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    mixed: list[str] = field(default_factory=list)
    fallbacks_seen: int = 0


def request_for(api: str, model: str, prompt: str, stream: bool) -> tuple[str, dict[str, Any]]:
    messages = [{"role": "user", "content": prompt}]
    if api == "openai":
        return "/v1/chat/completions", {"model": model, "messages": messages, "stream": stream}
    return "/api/chat", {"model": model, "messages": messages, "stream": stream}


def answer_text(api: str, stream: bool, body: bytes) -> tuple[str, bool]:
    """The answer's text, and whether the answer is complete."""
    if not stream:
        document = orjson.loads(body)
        if api == "openai":
            return document["choices"][0]["message"]["content"], True
        return document["message"]["content"], bool(document.get("done"))
    text, complete = [], False
    for raw in body.split(b"\n"):
        line = raw.strip()
        if api == "openai":
            if not line.startswith(b"data: "):
                continue
            data = line[6:]
            if data == b"[DONE]":
                complete = True
                continue
            event = orjson.loads(data)
            if "error" in event:
                return "".join(text), False
            text.append(event["choices"][0]["delta"].get("content") or "")
        elif line:
            event = orjson.loads(line)
            if "error" in event:
                return "".join(text), False
            text.append(event["message"]["content"])
            complete = bool(event.get("done"))
    return "".join(text), complete


async def client(index: int, base: str, until: float, rng: random.Random, outcomes: Outcomes) -> None:
    counts = outcomes.counts
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        for sequence in itertools.count():
            if time.monotonic() >= until:
                return
            api = rng.choice(("openai", "ollama"))
            stream = rng.random() < 0.5
            model = rng.choice((LLAMA, LLAMA, LLAMA, "gpt-4o-mini", QWEN))
            prompt = f"client {index} request {sequence} nonce {secrets.token_hex(8)}"
            path, body = request_for(api, model, prompt, stream)
            leaves = rng.random() < 0.04
            counts["requests"] += 1
            try:
                async with session.post(base + path, json=body) as response:
                    outcomes.statuses[response.status] += 1
                    if response.status != 200:
                        await response.read()
                        counts[{429: "429", 503: "503"}.get(response.status, "other status")] += 1
                        # as the SDKs do: wait what Retry-After says (with jitter) before the next request
                        retry_after = float(response.headers.get("Retry-After", "0") or 0)
                        await asyncio.sleep(min(retry_after, 5.0) * rng.uniform(0.5, 1.0))
                        continue
                    if leaves:
                        await response.content.readany()
                        counts["client left"] += 1
                        continue  # leaving the block drops the connection mid-answer
                    data = await response.read()
                    served = response.headers.get("X-Router-Model", "")
                    if "X-Router-Fallback" in response.headers:
                        outcomes.fallbacks_seen += 1
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                counts["client error"] += 1
                counts[f"client error: {type(exc).__name__}"] += 1
                continue
            try:
                text, complete = answer_text(api, stream, data)
            except (ValueError, KeyError, IndexError, TypeError):
                counts["unreadable"] += 1
                continue
            if not complete:
                counts["broken stream" if stream else "broken answer"] += 1
                if text and not expected_answer(served, prompt).startswith(text):
                    outcomes.mixed.append(f"{prompt!r} on {served}: partial {text[:60]!r}")
                continue
            if text != expected_answer(served, prompt):
                outcomes.mixed.append(f"{prompt!r} on {served}: {text[:60]!r}")
                continue
            counts["ok"] += 1
            await asyncio.sleep(rng.uniform(0.0, 0.05))


# the report ------------------------------------------------------------------------------


async def fetch(base: str, path: str) -> bytes:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session, session.get(base + path) as response:
        return await response.read()


async def metric_sum(base: str, name: str) -> float:
    text = (await fetch(base, "/metrics")).decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


async def settle(base: str) -> tuple[int, dict[str, Any]]:
    """Wait until nothing is in flight or queued on any container; what is left after SETTLE_SECONDS."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        status = orjson.loads(await fetch(base, "/router/status"))
        held = sum(c["in_flight"] + c["queued"] for c in status["containers"])
        if held == 0 or time.monotonic() > deadline:
            return held, status
        await asyncio.sleep(0.5)


# what an unhandled error leaves in the router's log: a stdlib traceback (aiohttp's
# "Error handling request"), a structlog line logged with exc_info, an error-level line
TRACE_MARKS = ("Traceback (most recent call last)", '"exc_info"', '"exception"', '"level":"error"', '"level":"critical"')


def tracebacks(log: Path) -> list[str]:
    lines = log.read_text(errors="replace").splitlines()
    return [line[:300] for line in lines if line.startswith(("ERROR ", "CRITICAL ")) or any(m in line for m in TRACE_MARKS)]


async def soak(args: argparse.Namespace, workdir: Path) -> int:
    rng = random.Random(args.seed)
    stack = Stack(workdir)
    try:
        fleet = Fleet(stack)
        await fleet.start()
        catalog = workdir / "chaos-catalog.yaml"
        catalog.write_text(catalog_yaml({name: c.url for name, c in fleet.containers.items()}))
        port = free_port()
        router = stack.spawn(
            "router", [str(REPO / ".venv/bin/ollama-router"), "serve", str(catalog), "--port", str(port), "--no-pull"]
        )
        base = f"http://127.0.0.1:{port}"
        await wait_http(base + "/readyz", timeout=60)
        rss_start = rss_mb(router.pid)
        started = time.monotonic()
        until = started + args.duration
        outcomes = Outcomes()
        chaos = Chaos(fleet, rng)
        await asyncio.gather(
            chaos.run(until),
            *(client(i, base, until, random.Random(rng.random()), outcomes) for i in range(args.clients)),
        )
        elapsed = time.monotonic() - started
        for container in fleet.containers.values():  # every container back, every fault cleared
            if container.proc.popen.poll() is not None:
                await fleet.restart(container)
            await fleet.control(container, "DELETE", "/_emulator/faults")
        held, status = await settle(base)
        fallbacks_metric = await metric_sum(base, "ollama_router_fallbacks_total")
        ejections_metric = await metric_sum(base, "ollama_router_ejections_total")
        rss_end = rss_mb(router.pid)
        router.stop()
        found = tracebacks(workdir / "router.log")
    finally:
        stack.stop()

    counts = outcomes.counts
    ejections = sum(c["ejections"] for c in status["containers"])
    fallbacks = status["counters"]["fallbacks"]
    rows = [
        ("duration", f"{elapsed:.0f} s, {args.clients} clients, seed {args.seed}"),
        ("chaos actions", ", ".join(f"{k} {v}" for k, v in sorted(chaos.done.items()))),
        ("requests", f"{counts['requests']} ({counts['requests'] / elapsed:.0f}/s)"),
        ("ok (whole answer, the right one)", counts["ok"]),
        ("429 (fleet at capacity)", counts["429"]),
        ("503 (nothing could serve)", counts["503"]),
        ("other statuses", ", ".join(f"{s}: {n}" for s, n in sorted(outcomes.statuses.items()) if s not in (200, 429, 503)) or 0),
        ("broken streams", counts["broken stream"]),
        ("broken non-streamed answers", counts["broken answer"]),
        ("clients that left mid-answer", counts["client left"]),
        ("client errors", ", ".join(f"{k[14:]}: {v}" for k, v in counts.items() if k.startswith("client error: ")) or 0),
        ("mixed answers", len(outcomes.mixed)),
        ("lost capacity (in flight + queued after settling)", held),
        ("router RSS start / end", f"{rss_start:.0f} MB / {rss_end:.0f} MB"),
        ("tracebacks in the router log", len(found)),
        ("ejections (status / metric)", f"{ejections} / {ejections_metric:.0f}"),
        ("fallbacks (status / metric; clients saw)", f"{fallbacks} / {fallbacks_metric:.0f}; {outcomes.fallbacks_seen}"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"| {'outcome'.ljust(width)} | value |\n| {'-' * width} | --- |")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
    problems = []
    if held:
        problems.append(f"lost capacity: {held} requests still held")
    if outcomes.mixed:
        problems.append("mixed answers: " + "; ".join(outcomes.mixed[:5]))
    if found:
        problems.append("tracebacks: " + " | ".join(found[:3]))
    if fallbacks != fallbacks_metric or ejections != ejections_metric:
        problems.append("/router/status and /metrics disagree")
    for problem in problems:
        print("FAIL", problem, file=sys.stderr)
    print(f"logs: {workdir}", file=sys.stderr)
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=240.0, help="seconds of load and chaos (default 240)")
    parser.add_argument("--clients", type=int, default=30, help="concurrent clients (default 30)")
    parser.add_argument("--seed", type=int, default=17, help="seed for the chaos and the clients' choices")
    args = parser.parse_args()
    if args.duration < 15:
        parser.error("--duration must be at least 15 seconds")
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
    return asyncio.run(soak(args, workdir))


if __name__ == "__main__":
    sys.exit(main())
