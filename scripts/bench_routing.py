#!/usr/bin/env python3
"""Routing policies compared on one emulated fleet: what placement does to the wait.

One fleet of emulators (`python -m router.emulator`, modelling llama-server's
slots, prompt cache, prompt rate and decode slow-down): by default one model
on four containers (`--models`, `--containers`), num_parallel 4, prompt 4,000
tokens/s, decode 40 tokens/s per slot, the emulator's default decode curve.
A seeded trace of scripts/routing_trace.py (`--trace`: agent-heavy, the
one the floors are judged on, by default; or mixed) is replayed
open-loop (scripts/routing_replay.py) at 50%, 80% and 100% of the fleet's
capacity (derived from the emulator parameters: see routing_trace.py and the
output) against each side in turn:

- the router (`ollama-router serve`) with the model's `routing:` set to
  affinity, least_loaded and round_robin;
- nginx, round-robin over each model's containers (`apt-get install nginx`);
- LiteLLM's proxy with `simple-shuffle` and `least-busy` routing, the
  containers as OpenAI-compatible deployments of each model, installed in
  its own virtual environment, never the project's (`--litellm-venv`,
  default bench-results/litellm-venv: `python3 -m venv DIR && DIR/bin/pip
  install 'litellm[proxy]'`); left out when not installed.

Before each run every emulator unloads and reloads its model (empty prompt
caches) and the side starts fresh (LiteLLM, slow to start, runs throughout),
so every side meets the same fleet and the same sessions at the same times.
The sides alternate, starting one later at each load.

Per side: time to first token p50/p95/p99 of the requests sent in the
measured window, completed requests/s, prompt tokens the emulators processed
per request (`/_emulator/stats`) and how much of the prompts their caches
held, the proxy's CPU per request (its whole process, background work
included); and the router's own cost per request of the affinity key and
ordering, measured in-process (the hot path).

The issue's sizes are slow on a small machine: `--time-scale K` multiplies
every emulator rate by K and divides the trace's times by K, so a run lasts
1/K of the real time and every ratio stays, as long as the proxies' own CPU
time stays small against the sleeps (the work per token is the same, K times
denser: LiteLLM's proxy, at about 0.1 s of CPU per streamed answer, is what
bounds K on two cores). Times are reported in real seconds.

    .venv/bin/python scripts/bench_routing.py            # full: 3 loads x 6 sides, 30-45 minutes
    .venv/bin/python scripts/bench_routing.py --quick    # smoke: 80% only, short windows, about 2 minutes
    .venv/bin/python scripts/bench_routing.py --trace mixed   # more chats and one-shots

Output: a Markdown table (stdout and bench-results/routing.md) and
bench-results/routing.json (meta, results, ratios, floors).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import structlog

SCRIPTS = Path(__file__).resolve().parent
sys.path[:0] = [str(SCRIPTS.parent), str(SCRIPTS)]

import bench as base  # noqa: E402 - the process helpers of scripts/bench.py
from routing_replay import Pace, Replay, RunResult, progress_line  # noqa: E402
from routing_trace import TRACES, Fleet, Session, build_trace, summary  # noqa: E402

REPO = SCRIPTS.parent
PYTHON = sys.executable
MODEL_NAMES = ["llama3.2:3b", "qwen2.5:7b", "gemma3:4b", "mistral:7b"]
NUM_PARALLEL = 4
PROMPT_RATE = 4000.0
DECODE_RATE = 40.0
ANSWER_TOKENS = 400  # the emulators' answers; each request asks for its own length (max_tokens)
POLICIES = ("affinity", "least_loaded", "round_robin")
LITELLM_STRATEGIES = ("simple-shuffle", "least-busy")
FLOOR_LOAD = 0.8
LITELLM_KEY = "sk-routing-bench"  # LiteLLM's proxy refuses to start without one; every side is sent it (the others ignore it)

# scripts/bench.py's server block, with room for a saturated fleet: headers come with the first token
NGINX_SERVER = base.NGINX_SERVER.replace(
    "proxy_request_buffering off;", "proxy_request_buffering off;\n      proxy_read_timeout 900s;\n      proxy_send_timeout 900s;"
)


# the fleet and the sides --------------------------------------------------------------


@dataclass
class Emulators:
    """The fleet: by model, the URLs of its containers."""

    urls: dict[str, list[str]]

    @property
    def models(self) -> list[str]:
        return list(self.urls)

    def all(self) -> list[tuple[str, str]]:
        return [(model, url) for model, urls in self.urls.items() for url in urls]

    async def stats(self, http: aiohttp.ClientSession) -> dict[str, int]:
        totals = {"prompt_tokens_processed": 0, "prompt_tokens_reused": 0, "in_flight": 0}
        for _, url in self.all():
            async with http.get(url + "/_emulator/stats") as response:
                stats = await response.json()
            for name in totals:
                totals[name] += int(stats[name])
        return totals

    async def reset(self, http: aiohttp.ClientSession, timeout: float = 180.0) -> None:
        """Every container idle, its model unloaded and loaded again: empty prompt caches."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # what the last side left running (LiteLLM may finish abandoned streams)
            if not (await self.stats(http))["in_flight"]:
                break
            await asyncio.sleep(0.2)
        for model, url in self.all():
            for body in ({"model": model, "keep_alive": 0}, {"model": model, "keep_alive": "24h"}):
                async with http.post(url + "/api/generate", json=body) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{url}: resetting {model} answered {response.status}")


def start_emulators(stack: base.Stack, time_scale: float, models: list[str], containers: int) -> Emulators:
    urls: dict[str, list[str]] = {}
    for m, model in enumerate(models):
        for c in range(containers):
            port = base.free_port()
            stack.spawn(f"emu-{m}-{c}", [
                PYTHON, "-m", "router.emulator", "--host", "127.0.0.1", "--port", str(port), "--model", model,
                "--num-parallel", str(NUM_PARALLEL), "--max-queue", "4096", "--keep-alive", "24h", "--load-time", "0",
                "--tokens-per-second", f"{DECODE_RATE * time_scale:g}",
                "--prompt-tokens-per-second", f"{PROMPT_RATE * time_scale:g}",
                "--response-tokens", str(ANSWER_TOKENS), "--context-length", "65536",
            ])
            urls.setdefault(model, []).append(f"http://127.0.0.1:{port}")
    return Emulators(urls)


def router_catalog(emulators: Emulators, policy: str) -> str:
    lines = [
        "version: 1",
        f"defaults: {{keep_alive: 24h, num_parallel: {NUM_PARALLEL}}}",
        # the queues must hold a saturated fleet's backlog: the emulators behind nginx and LiteLLM queue it too
        "router: {health_interval: 1s, ttft_timeout: 900s, max_queue: 4096, queue_timeout: 900s}",
        "containers:",
    ]
    names: dict[str, list[str]] = {}
    for m, (model, urls) in enumerate(emulators.urls.items()):
        for c, url in enumerate(urls):
            lines.append(f"  e{m}{c}: {{url: '{url}'}}")
            names.setdefault(model, []).append(f"e{m}{c}")
    lines.append("models:")
    lines += [f"  {model}: {{containers: [{', '.join(containers)}], routing: {policy}}}" for model, containers in names.items()]
    return "\n".join(lines) + "\n"


def litellm_config(emulators: Emulators, strategy: str) -> str:
    deployments = [
        {"model_name": model, "litellm_params": {
            "model": f"openai/{model}", "api_base": url + "/v1", "api_key": "unused", "timeout": 900, "stream_timeout": 900,
        }}
        for model, url in emulators.all()
    ]
    config = {
        "model_list": deployments,
        "router_settings": {"routing_strategy": strategy, "num_retries": 0},
        "litellm_settings": {"request_timeout": 900, "drop_params": True, "telemetry": False},
        "general_settings": {"master_key": LITELLM_KEY},
    }
    return json.dumps(config, indent=2)  # JSON is YAML


async def wait_up(proc: base.Proc, url: str, timeout: float) -> None:
    """`url` answers 200, or the process exited (see its log in the work directory)."""
    waiting = asyncio.create_task(base.wait_http(url, timeout=timeout))
    while not waiting.done():
        if proc.popen.poll() is not None:
            waiting.cancel()
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}: see {proc.name}.log")
        await asyncio.wait({waiting}, timeout=0.5)
    waiting.result()


@dataclass
class Side:
    name: str
    start: Callable[[], Any]  # async () -> (urls by model, pid): started for one run
    stop: Callable[[], None]
    per_run: bool = True


class Sides:
    """How each side is started and reached; their processes live on `stack`."""

    def __init__(self, stack: base.Stack, emulators: Emulators, args: argparse.Namespace) -> None:
        self.stack = stack
        self.emulators = emulators
        self.args = args
        self.workdir = stack.workdir
        self.running: dict[str, base.Proc] = {}

    async def router(self, policy: str) -> tuple[dict[str, str], int]:
        catalog = self.workdir / f"catalog-{policy}.yaml"
        catalog.write_text(router_catalog(self.emulators, policy))
        port = base.free_port()
        proc = self.stack.spawn(f"router-{policy}", [str(Path(PYTHON).parent / "ollama-router"), "serve", str(catalog), "--port", str(port)])
        self.running[policy] = proc
        url = f"http://127.0.0.1:{port}"
        await wait_up(proc, url + "/readyz", timeout=60)
        return dict.fromkeys(self.emulators.models, url), proc.pid

    async def nginx(self) -> tuple[dict[str, str], int]:
        models = self.emulators.models
        ports = {model: base.free_port() for model in models}
        upstreams = "\n".join(
            f"upstream m{i} {{ {' '.join(f'server {u.removeprefix(base.HTTP)};' for u in self.emulators.urls[model])} keepalive 64; }}"
            for i, model in enumerate(models)
        )
        servers = "".join(NGINX_SERVER.format(port=ports[model], upstream=f"m{i}") for i, model in enumerate(models))
        conf = self.workdir / "nginx.conf"
        conf.write_text(base.NGINX_CONF.format(dir=self.workdir, upstreams=upstreams, servers=servers))
        proc = self.stack.spawn("nginx", ["nginx", "-c", str(conf), "-p", str(self.workdir)])
        self.running["nginx"] = proc
        urls = {model: f"http://127.0.0.1:{port}" for model, port in ports.items()}
        for url in urls.values():
            await base.wait_http(url + "/")
        return urls, proc.pid

    async def litellm(self, strategy: str) -> tuple[dict[str, str], int]:
        proc = self.running.get(strategy)
        port_file = self.workdir / f"litellm-{strategy}.port"
        if proc is None:
            config = self.workdir / f"litellm-{strategy}.yaml"
            config.write_text(litellm_config(self.emulators, strategy))
            port = base.free_port()
            port_file.write_text(str(port))
            env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False", "LITELLM_LOG": "ERROR"}
            binary = Path(self.args.litellm_venv) / "bin" / "litellm"
            proc = self.stack.spawn(f"litellm-{strategy}", [
                str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1",
            ], env=env)
            self.running[strategy] = proc
            await wait_up(proc, f"http://127.0.0.1:{port}/health/liveliness", timeout=300)
        url = f"http://127.0.0.1:{port_file.read_text()}"
        return dict.fromkeys(self.emulators.models, url), proc.pid

    def stop(self, key: str) -> None:
        proc = self.running.pop(key, None)
        if proc is not None:
            proc.stop()

    def build(self, use_nginx: bool, use_litellm: bool) -> list[Side]:
        sides = [
            Side(f"router {p}", lambda p=p: self.router(p), lambda p=p: self.stop(p)) for p in POLICIES  # type: ignore[misc]
        ]
        if use_nginx:
            sides.append(Side("nginx round-robin", self.nginx, lambda: self.stop("nginx")))
        if use_litellm:
            sides += [
                Side(f"litellm {s}", lambda s=s: self.litellm(s), lambda: None, per_run=False)  # type: ignore[misc]
                for s in LITELLM_STRATEGIES
            ]
        return sides


# one run ---------------------------------------------------------------------------------


async def one_run(
    side: Side, emulators: Emulators, trace: list[Session], pace: Pace, fleet: Fleet, args: argparse.Namespace, label: str,
) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        await emulators.reset(http)
        urls, pid = await side.start()
        before = await emulators.stats(http)
        cpu_before = base.cpu_seconds(pid)
        result = RunResult(args.warmup, args.seconds, args.drain)
        placements = None
        try:
            await Replay(trace, urls, pace, result, fleet.schedule).run(progress_line(label))
        finally:
            cpu = base.cpu_seconds(pid) - cpu_before
            after = await emulators.stats(http)
            if side.name.startswith("router"):
                placements = await affinity_placements(http, next(iter(urls.values())))
            side.stop()
    ttfts = result.ttfts()
    answered = max(1, result.first_tokens())
    processed = after["prompt_tokens_processed"] - before["prompt_tokens_processed"]
    reused = after["prompt_tokens_reused"] - before["prompt_tokens_reused"]
    errors = [o.error for o in result.outcomes if o.error is not None]
    return {
        "sessions": result.sessions_started,
        "requests": len(result.outcomes),
        "measured": len(ttfts),
        "still_waiting": result.waiting(),
        "errors": len(errors),
        "first_errors": sorted(set(errors))[:3],
        "ttft_p50_s": round(base.percentile(ttfts, 50) * args.time_scale, 3),
        "ttft_p95_s": round(base.percentile(ttfts, 95) * args.time_scale, 3),
        "ttft_p99_s": round(base.percentile(ttfts, 99) * args.time_scale, 3),
        "completed_per_s": round(result.completed_per_second() / args.time_scale, 4),
        "prompt_tokens_processed_per_request": round(processed / answered),
        "prompt_reuse": round(reused / max(1, processed + reused), 3),
        "proxy_cpu_us_per_request": round(cpu / answered * 1e6),
        **({"affinity_placements": placements} if placements else {}),
        "by_kind": by_kind(result, args.time_scale),
    }


def by_kind(result: RunResult, time_scale: float) -> dict[str, dict[str, float]]:
    """TTFT p50/p99 and the share of the prompt the container evaluated, per session kind."""
    out = {}
    window = [o for o in result.outcomes if result.warmup <= o.sent < result.window_end and o.first is not None]
    for kind in ("agent", "chat", "one-shot"):
        mine = [o for o in window if o.kind == kind]
        if not mine:
            continue
        ttfts = [(o.first or 0) - o.sent for o in mine]
        counted = [o for o in mine if o.processed is not None]
        out[kind] = {
            "requests": len(mine),
            "ttft_p50_s": round(base.percentile(ttfts, 50) * time_scale, 3),
            "ttft_p99_s": round(base.percentile(ttfts, 99) * time_scale, 3),
            "evaluated_share": round(sum(o.processed or 0 for o in counted) / max(1, sum(o.prompt_tokens for o in counted)), 3),
        }
    return out


async def affinity_placements(http: aiohttp.ClientSession, router: str) -> dict[str, int]:
    """The router's own count of affinity outcomes (hit, miss, spillover, failover), over its models."""
    async with http.get(router + "/router/status") as response:
        status = await response.json()
    totals: dict[str, int] = {}
    for model in status["models"]:
        for outcome, count in model["affinity"].items():
            totals[outcome] = totals.get(outcome, 0) + count
    return totals if any(totals.values()) else {}


# the hot path ----------------------------------------------------------------------------


def hot_path(repeat: int = 20, number: int = 1000) -> dict[str, float]:
    """The router's own cost per request of affinity, in-process, in µs (best of `repeat`):
    the conversation key from a parsed body, and ordering, recording a placement and its end."""
    from router.catalog import parse_catalog
    from router.events import EventHub
    from router.fleet.balancer import Balancer
    from router.fleet.fleet import Fleet as RouterFleet
    from router.fleet.fleet import FleetPolicy
    from router.fleet.routing import Policies
    from router.fleet.state import LoadedModel
    from router.http.apis import api_for
    from router.limits.local import LocalLimits

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))  # the fleets' own log lines

    def best(call: Callable[[], object]) -> float:
        return min(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e6

    trace = build_trace(3, 40, MODEL_NAMES[:1])
    agent = next(s for s in trace if s.kind == "agent")
    conversation: list[dict[str, str]] = []
    for turn in agent.turns:
        conversation += [*turn.new_messages, {"role": "assistant", "content": "calling a tool " * 20}]
    bodies = {
        "chat, one short message": {"model": "m", "messages": [{"role": "user", "content": "Why is the sky blue?"}]},
        f"agent, {len(conversation)} messages": {"model": "m", "messages": conversation},
    }
    api = api_for("/v1/chat/completions")
    costs: dict[str, float] = {}
    for name, body in bodies.items():
        payload = orjson.loads(orjson.dumps(body))
        costs[f"key: {name}"] = round(best(lambda p=payload: api.conversation_key("/v1/chat/completions", p)), 2)  # type: ignore[misc]
    for containers in (2, 4, 8):
        for policy in POLICIES:
            text = "version: 1\ncontainers:\n" + "".join(f"  c{i}: {{gpus: [{i}], port: {11000 + i}}}\n" for i in range(containers))
            text += f"models:\n  m:\n    containers: [{', '.join(f'c{i}' for i in range(containers))}]\n    routing: {policy}\n"
            catalog = parse_catalog(text).catalog
            fleet = RouterFleet(catalog, FleetPolicy(), limits=LocalLimits(), events=EventHub())
            model = next(iter(catalog.models.values()))
            for state in fleet.containers.values():
                fleet.probe_passed(state, version="0", loaded={model.key: LoadedModel(model.tag, model.key, None)}, tags=[])
            balancer = Balancer(fleet, Policies())
            keys = itertools.count(1)
            variants = {"": lambda: None} if policy != "affinity" else {
                " (a returning conversation)": lambda: 0x5EED,
                " (a new conversation)": keys.__next__,
            }
            for variant, key_of in variants.items():

                def place(balancer: Balancer = balancer, model: Any = model, key_of: Callable[[], int | None] = key_of) -> None:
                    key = key_of()
                    offered = balancer.candidates(model, frozenset(), None, key, 0xA9E47)
                    balancer.placed(model, key, offered[0], offered, 40_000, 0xA9E47)
                    balancer.released(model, key, offered[0])

                for _ in range(64):  # every runner's slots hold conversations
                    place()
                costs[f"order + place: {policy}{variant}, {containers} containers"] = round(best(place), 2)
    return costs


# report ----------------------------------------------------------------------------------


def derive(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Ratios against affinity at each load, and the issue's floors at 80%."""
    ratios: dict[str, Any] = {}
    for load, sides in results.items():
        mine = sides.get("router affinity")
        if mine is None:
            continue
        ratios[load] = {
            name: {
                "ttft_p50_x": _ratio(other["ttft_p50_s"], mine["ttft_p50_s"]),
                "ttft_p99_x": _ratio(other["ttft_p99_s"], mine["ttft_p99_s"]),
                "completed_x": _ratio(mine["completed_per_s"], other["completed_per_s"]),
                "prompt_tokens_x": _ratio(other["prompt_tokens_processed_per_request"], mine["prompt_tokens_processed_per_request"]),
            }
            for name, other in sides.items()
            if name != "router affinity"
        }
    at = results.get(f"{FLOOR_LOAD:.0%}", {})
    mine, rr, ll = at.get("router affinity"), at.get("router round_robin"), at.get("router least_loaded")
    floors = {}
    if mine and rr:
        floors["ttft_p50_vs_round_robin"] = _floor("affinity TTFT p50 lower than round_robin's", _ratio(rr["ttft_p50_s"], mine["ttft_p50_s"]), ">=", 5.0, "x")
    if mine and ll:
        floors["ttft_p99_vs_least_loaded"] = _floor("affinity TTFT p99 / least_loaded's", _ratio(mine["ttft_p99_s"], ll["ttft_p99_s"]), "<=", 1.0, "x")
        floors["completed_vs_least_loaded"] = _floor("affinity completed req/s / least_loaded's", _ratio(mine["completed_per_s"], ll["completed_per_s"]), ">=", 1.0, "x")
    return {"vs_affinity": ratios, "floors": floors}


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def _floor(label: str, value: float | None, op: str, limit: float, unit: str) -> dict[str, Any]:
    met = None if value is None else (value >= limit if op == ">=" else value <= limit)
    return {"label": label, "value": value, "floor": f"{op} {limit:g} {unit}", "met": met}


def markdown(results: dict[str, dict[str, Any]], derived: dict[str, Any], meta: dict[str, Any]) -> str:
    rows = [
        f"Routing benchmark ({meta['mode']} run, {meta['cpus']} CPUs, time scale {meta['time_scale']:g}x; "
        f"{meta['warmup_s']:g} s warm-up + {meta['seconds']:g} s measured per side and load, wall time; times below in real seconds)",
        "",
        f"Fleet: {meta['fleet']}. Capacity: {meta['capacity_rps']:.3f} requests/s ({meta['capacity_how']}).",
        f"Trace {meta['trace_name']} (seed {meta['seed']}): {meta['trace']}; {meta['trace_summary']['agent_request_share']:.0%} of requests from agents, "
        f"prompts {meta['trace_summary']['mean_prompt_tokens']:,} tokens on average (up to {meta['trace_summary']['max_prompt_tokens']:,}).",
        "",
        "| load | side | TTFT p50 s | TTFT p95 s | TTFT p99 s | completed req/s | prompt tokens processed / request | prompt cached | proxy CPU µs / request | errors | p50 vs affinity | p99 vs affinity |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for load, sides in results.items():
        for name, r in sides.items():
            vs = derived["vs_affinity"].get(load, {}).get(name)
            p50 = f"{vs['ttft_p50_x']}x" if vs and vs["ttft_p50_x"] is not None else "-"
            p99 = f"{vs['ttft_p99_x']}x" if vs and vs["ttft_p99_x"] is not None else "-"
            rows.append(
                f"| {load} | {name} | {r['ttft_p50_s']:.2f} | {r['ttft_p95_s']:.2f} | {r['ttft_p99_s']:.2f} | {r['completed_per_s']:.3f} "
                f"| {r['prompt_tokens_processed_per_request']:,} | {r['prompt_reuse']:.0%} | {r['proxy_cpu_us_per_request']:,} | {r['errors']} | {p50} | {p99} |"
            )
    rows += ["", f"| floor (80% load, {meta['trace_name']} trace) | value | limit | met |", "|---|---|---|---|"]
    for floor in derived["floors"].values():
        rows.append(f"| {floor['label']} | {floor['value']} | {floor['floor']} | {({True: 'yes', False: '**no**', None: '-'})[floor['met']]} |")
    rows += ["", "| router hot path (in-process, best of several runs) | µs / request |", "|---|---|"]
    rows += [f"| {name} | {value:.2f} |" for name, value in meta["hot_path_us"].items()]
    return "\n".join(rows) + "\n"


# main ------------------------------------------------------------------------------------


async def amain(args: argparse.Namespace) -> int:
    mix = TRACES[args.trace]
    models = MODEL_NAMES[: args.models]
    fleet = Fleet(len(models) * args.containers, NUM_PARALLEL, PROMPT_RATE, DECODE_RATE)
    # Sessions already under way for as long as the longest one lasts, then enough for the window
    # at the highest load: generated once and replayed at every load.
    sample = build_trace(args.seed, 200, models, mix)
    capacity = fleet.capacity(sample)
    # requests queue and decode alongside others, so sessions last longer than their ideal schedule
    prestart = 1.5 * max(fleet.schedule(s)[-1] for s in sample)
    window_real = prestart + (args.warmup + args.seconds) * args.time_scale
    sessions = int(window_real * max(args.loads) * capacity / mix.mean_turns() * 1.3) + 20
    trace = build_trace(args.seed, sessions, models, mix)
    capacity = fleet.capacity(trace)
    no_reuse = fleet.capacity(trace, reuse=False)
    # the arrivals are spaced for the mix's mean number of turns; this trace's own mean sets the rate
    per_session = sum(len(s.turns) for s in trace) / len(trace)
    print("bench: measuring the router's hot path", file=sys.stderr)
    hot = hot_path(repeat=5 if args.quick else 20)
    workdir = Path(tempfile.mkdtemp(prefix="ollama-router-routing-"))
    stack = base.Stack(workdir)
    use_nginx = shutil.which("nginx") is not None and not args.no_nginx
    use_litellm = (Path(args.litellm_venv) / "bin" / "litellm").exists() and not args.no_litellm
    if not use_litellm and not args.no_litellm:
        print(f"bench: no LiteLLM in {args.litellm_venv} (see --help): its sides are left out", file=sys.stderr)
    results: dict[str, dict[str, Any]] = {}
    try:
        emulators = start_emulators(stack, args.time_scale, models, args.containers)
        for _, url in emulators.all():
            await base.wait_http(url + "/")
        builder = Sides(stack, emulators, args)
        sides = builder.build(use_nginx, use_litellm)
        if args.sides:
            sides = [s for s in sides if any(want in s.name for want in args.sides)]
        # LiteLLM takes a while to start: both proxies start now, together, before any run is measured
        await asyncio.gather(*(builder.litellm(s) for s in LITELLM_STRATEGIES if any(side.name == f"litellm {s}" for side in sides)))
        print(f"bench: processes in {workdir}; sides {', '.join(s.name for s in sides)}; capacity {capacity:.3f} req/s; "
              f"{len(trace)} sessions", file=sys.stderr)
        for index, load in enumerate(args.loads):
            label = f"{load:.0%}"
            pace = Pace(load * capacity * mix.mean_turns() / per_session, args.time_scale, prestart)
            results[label] = {}
            order = sides[index % len(sides):] + sides[: index % len(sides)]
            for side in order:
                print(f"bench: {label} load, {side.name}", file=sys.stderr, flush=True)
                run = await one_run(side, emulators, trace, pace, fleet, args, f"{label} {side.name}:")
                results[label][side.name] = run
                print(f"  {label} {side.name}: {json.dumps(run)}", file=sys.stderr, flush=True)
            results[label] = {s.name: results[label][s.name] for s in sides}  # table order
    finally:
        stack.stop()
    meta = {
        "mode": "quick" if args.quick else "full",
        "cpus": os.cpu_count(),
        "time_scale": args.time_scale,
        "warmup_s": args.warmup,
        "seconds": args.seconds,
        "drain_s": args.drain,
        "prestart_real_s": round(prestart),
        "loads": args.loads,
        "seed": args.seed,
        "fleet": (f"{len(models)} model{'s' if len(models) > 1 else ''} x {args.containers} containers, num_parallel {NUM_PARALLEL}, prompt {PROMPT_RATE:g} tokens/s, "
                  f"decode {DECODE_RATE:g} tokens/s per slot, the emulator's default decode curve"),
        "capacity_rps": round(capacity, 4),
        "capacity_how": (f"{fleet.containers * fleet.num_parallel} slots / mean slot time of the trace's requests when each turn "
                         f"evaluates only what it adds to its conversation (the best any placement can do): evaluated prompt / "
                         f"{PROMPT_RATE:g} tokens/s + answer x {fleet.token_seconds_full * 1e3:.1f} ms (a token's time when "
                         f"{NUM_PARALLEL} slots decode); with every prompt evaluated whole it would be {no_reuse:.3f} requests/s"),
        "capacity_no_reuse_rps": round(no_reuse, 4),
        "trace_name": args.trace,
        "trace": mix.describe(),
        "trace_summary": summary(trace),
        "hot_path_us": hot,
        "sides": [s.name for s in sides],
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    derived = derive(results)
    table = markdown(results, derived, meta)
    base.write_report(Path(args.out), "routing", table, {"meta": meta, "results": results, "derived": derived})
    errors = sum(r["errors"] for sides_ in results.values() for r in sides_.values())
    if errors:
        print(f"bench: {errors} failed requests", file=sys.stderr)
    if args.strict and not all(f["met"] for f in derived["floors"].values()):
        return 1
    return 1 if errors and args.strict else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 80%% load only, short windows (about 2 minutes)")
    parser.add_argument("--loads", type=float, nargs="+", default=None, help="shares of capacity (default 0.5 0.8 1.0; quick 0.8)")
    parser.add_argument("--time-scale", type=float, default=5.0, help="emulator rates x K, trace times / K (default 5)")
    parser.add_argument("--warmup", type=float, default=None, help="wall seconds before the measured window (default 20; quick 2)")
    parser.add_argument("--seconds", type=float, default=None, help="wall seconds measured per side and load (default 80; quick 5)")
    parser.add_argument("--drain", type=float, default=None, help="wall seconds to wait for first tokens after the window (default 20; quick 2)")
    parser.add_argument("--models", type=int, default=1, choices=range(1, len(MODEL_NAMES) + 1), help="models in the fleet (default 1)")
    parser.add_argument("--containers", type=int, default=4, help="containers per model (default 4)")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--trace", choices=sorted(TRACES), default="agent-heavy",
                        help="the session mix (default agent-heavy, the one the floors are judged on)")
    parser.add_argument("--sides", nargs="+", default=None, help="only the sides whose name contains one of these")
    parser.add_argument("--litellm-venv", default=str(REPO / "bench-results" / "litellm-venv"), help="a virtual environment with litellm[proxy]")
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--no-nginx", action="store_true")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a floor is missed or a request failed")
    parser.add_argument("--out", default=str(REPO / "bench-results"))
    args = parser.parse_args(argv)
    quick = args.quick
    args.loads = args.loads or ([0.8] if quick else [0.5, 0.8, 1.0])
    args.warmup = args.warmup if args.warmup is not None else (2.0 if quick else 20.0)
    args.seconds = args.seconds or (5.0 if quick else 80.0)
    args.drain = args.drain if args.drain is not None else (2.0 if quick else 20.0)
    return args


def main(argv: list[str] | None = None) -> int:
    runner: Callable[[Any], int] = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        runner = uvloop.run
    return runner(amain(parse_args(argv)))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
