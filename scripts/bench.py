#!/usr/bin/env python3
"""Router overhead, side by side: the same load against an emulator directly,
through the router, and (when installed) through nginx as a reference proxy.

Everything runs as separate processes on loopback: emulators
(`python -m router.emulator`), the router (`ollama-router serve` on a generated
catalog, health checks and keep-warm running) and nginx. Runs alternate
direct / router / nginx, round after round, so that noise from a shared
machine falls on every side alike; the report gives ratios router/direct.

- non-streamed `/v1/chat/completions` at concurrency 1, 16, 64: requests/s,
  p50/p99 latency (wrk with a Lua POST script; an aiohttp client without wrk);
- streaming (SSE, 50 tokens/s): time to first token and the gap between
  chunks, p50/p99, at concurrency 1 and 64 (an asyncio client: wrk cannot
  see chunks);
- N concurrent streams (1,000) held to the end: errors, router peak RSS, CPU;
- router CPU per request: the router process's utime+stime (/proc) over the
  runs, divided by the requests it served.

With `--redis`, a second router runs beside the first on the same catalog with
its limits held in Redis (`serve --redis`, a redis-server of its own on
loopback), as one more side of the same alternating rounds: the report gives
what Redis adds per request (p50/p99 at each level, CPU per request) as
differences and ratios against the local-limits router measured in the same
run. `--keys` gives both routers an API key with a rate limit and
`max_concurrent` (never reached), so a request also takes a token and a key
count: with Redis, two more operations per request.

Output: a Markdown table (stdout and bench-results/bench.md) and
bench-results/bench.json.

    .venv/bin/python scripts/bench.py            # full run, about 3 minutes
    .venv/bin/python scripts/bench.py --quick    # smoke run, about 30 s
    .venv/bin/python scripts/bench.py --redis --no-nginx   # local limits vs Redis-held limits
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

FAST_MODEL = "llama3.2:3b"  # tokens_per_second 0: throughput
STREAM_MODEL = "qwen2.5:0.5b"  # 50 tokens/s: TTFT and gaps
HOLD_MODEL = "smollm2:135m"  # slow streams held open by the thousand
HOLD_SLOTS = 256  # the catalog's num_parallel cap per container
HTTP = "http://"
PROMPT = [{"role": "user", "content": "Why is the sky blue?"}]

FLOORS = {
    "cpu_us_per_request_c16": ("router CPU per request at c16", "<=", 450.0, "µs"),
    "rps_ratio_c16": ("throughput at c16, router/direct", ">=", 0.6, "x"),
    "added_p50_ms_c1": ("added latency p50 at c1", "<=", 0.7, "ms"),
    "added_p99_ms_c1": ("added latency p99 at c1", "<=", 2.0, "ms"),
    "ttft_added_p50_ms_c1": ("TTFT overhead p50 at c1", "<=", 1.0, "ms"),
    "gap_added_p50_ms": ("gap overhead p50 (c1 and c64)", "<=", 0.2, "ms"),
    "hold_errors": ("errors over the held streams", "<=", 0, ""),
    "hold_rss_mb": ("router peak RSS with the held streams", "<=", 150.0, "MB"),
}
# with --redis: what holding the limits in Redis may cost (router-redis against router, same run)
REDIS_FLOORS = {
    "redis_added_p50_ms_c1": ("Redis-held limits: added latency p50 at c1", "<=", 0.3, "ms"),
    "redis_cpu_us_per_request_c16": ("Redis-held limits: router CPU per request at c16", "<=", 450.0, "µs"),
}
ROUTERS = ("router", "router-redis")  # the sides that are this router (CPU and RSS are measured)


# processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return found


def process_tree(pid: int) -> list[int]:
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += _children(current)
    return tree


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and its live children (the router's workers), seconds."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def rss_mb(pid: int) -> float:
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            total += int(Path(f"/proc/{member}/statm").read_text().split()[1]) * PAGE
    return total / 1e6


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        os.kill(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)


class Stack:
    """The processes of one run; stopped by PID, last started first."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[Proc] = []

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        popen = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        log.close()
        proc = Proc(name, popen)
        self.procs.append(proc)
        return proc

    def emulator(self, name: str, model: str, *, tps: float, slots: int, tokens: int = 24) -> str:
        port = free_port()
        self.spawn(
            name,
            [PYTHON, "-m", "router.emulator", "--host", "127.0.0.1", "--port", str(port), "--model", model,
             "--tokens-per-second", f"{tps:g}", "--num-parallel", str(slots), "--max-queue", "4096",
             "--response-tokens", str(tokens), "--keep-alive", "24h"],
        )
        return f"http://127.0.0.1:{port}"

    async def redis(self) -> str:
        """A redis-server of this run's own (no persistence, loopback); its URL."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("bench: --redis needs redis-server (apt-get install redis-server)")
        port = free_port()
        self.spawn("redis", [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
                             "--save", "", "--appendonly", "no"])
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"PING\r\n")
                pong = await reader.readline()
                writer.close()
                if pong.startswith(b"+PONG"):
                    return f"redis://127.0.0.1:{port}/0"
            if time.monotonic() > deadline:
                raise TimeoutError("redis-server did not start")
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop()


async def start_router(stack: Stack, name: str, catalog: Path, workers: int, extra: list[str], headers: dict[str, str]) -> Side:
    port = free_port()
    argv = [str(Path(PYTHON).parent / "ollama-router"), "serve", str(catalog), "--port", str(port), *extra]
    if workers > 1:
        argv += ["--workers", str(workers)]
    proc = stack.spawn(name, argv)
    url = f"http://127.0.0.1:{port}"
    await wait_http(url + "/readyz")
    return Side(name, url, url, [url], pid=proc.pid, headers=headers)


def bench_key(workdir: Path) -> tuple[list[str], dict[str, str]]:
    """A keys file with one key whose limits are checked on every request and never reached."""
    keys = workdir / "keys.yaml"
    made = subprocess.run(
        [str(Path(PYTHON).parent / "ollama-router"), "keys", "add", "bench", "--file", str(keys),
         "--rate-limit", "1000000000", "--max-concurrent", "1000000"],
        capture_output=True, text=True, check=True,
    )
    return ["--api-keys", str(keys)], {"Authorization": f"Bearer {made.stdout.strip()}"}


async def wait_http(url: str, *, status: int = 200, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url) as response:
                    await response.read()
                    if response.status == status:
                        return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer {status} within {timeout:g}s")
            await asyncio.sleep(0.1)


def catalog_yaml(fast: str, stream: str, holds: list[str]) -> str:
    lines = [
        "version: 1",
        "defaults: {keep_alive: 24h, num_parallel: 128}",
        "router: {health_interval: 2s, ttft_timeout: 30s, max_queue: 1024, queue_timeout: 30s}",
        "containers:",
        f"  fast: {{url: '{fast}'}}",
        f"  stream: {{url: '{stream}'}}",
        *(f"  hold-{i}: {{url: '{url}', num_parallel: {HOLD_SLOTS}}}" for i, url in enumerate(holds)),
        "models:",
        f"  {FAST_MODEL}: {{containers: [fast]}}",
        f"  {STREAM_MODEL}: {{containers: [stream]}}",
        f"  {HOLD_MODEL}: {{containers: [{', '.join(f'hold-{i}' for i in range(len(holds)))}]}}",
    ]
    return "\n".join(lines) + "\n"


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {dir}/nginx-body;
  proxy_temp_path {dir}/nginx-proxy;
  fastcgi_temp_path {dir}/nginx-fastcgi;
  uwsgi_temp_path {dir}/nginx-uwsgi;
  scgi_temp_path {dir}/nginx-scgi;
  {upstreams}
  {servers}
}}
"""
NGINX_SERVER = """
  server {{
    listen 127.0.0.1:{port} reuseport;
    location / {{
      proxy_pass http://{upstream};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host 127.0.0.1;
      proxy_buffering off;
      proxy_request_buffering off;
    }}
  }}
"""


def nginx_conf(workdir: Path, routes: dict[str, tuple[int, list[str]]]) -> str:
    upstreams = "\n".join(
        f"upstream {name} {{ {' '.join(f'server {u.removeprefix(HTTP)};' for u in urls)} keepalive 256; }}"
        for name, (_, urls) in routes.items()
    )
    servers = "".join(NGINX_SERVER.format(port=port, upstream=name) for name, (port, _) in routes.items())
    return NGINX_CONF.format(dir=workdir, upstreams=upstreams, servers=servers)


# load ---------------------------------------------------------------------------------


@dataclass
class Side:
    """One way to reach the backends: direct, router or nginx."""

    name: str
    fast: str  # base URL that reaches the throughput emulator
    stream: str
    hold: list[str]  # base URLs to spread the held streams over
    pid: int | None = None  # a router side: its process, for CPU and RSS
    headers: dict[str, str] = field(default_factory=dict)  # e.g. the API key


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


WRK_LUA = """
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %d %d %d %d %.1f %.1f\\n", summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass
class LoadResult:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float


def non_streamed_body() -> bytes:
    return json.dumps({"model": FAST_MODEL, "messages": PROMPT, "stream": False}).encode()


def run_wrk(script: Path, url: str, concurrency: int, seconds: float) -> LoadResult:
    argv = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(script), url]
    output = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("BENCH "))
    requests, micros, status_errors, socket_errors, p50, p99 = line.split()[1:]
    return LoadResult(int(requests), int(micros) / 1e6, int(status_errors) + int(socket_errors), float(p50) / 1e3, float(p99) / 1e3)


def wrk_script(workdir: Path, side: Side) -> Path:
    script = workdir / f"post-{side.name}.lua"
    headers = "\n".join(f'wrk.headers["{name}"] = "{value}"' for name, value in side.headers.items())
    script.write_text(WRK_LUA.format(body=non_streamed_body().decode(), headers=headers))
    return script


async def run_client(url: str, concurrency: int, seconds: float, headers: dict[str, str] | None = None) -> LoadResult:
    """The fallback load generator without wrk (one aiohttp session, keep-alive)."""
    body = non_streamed_body()
    sent_headers = {"Content-Type": "application/json", **(headers or {})}
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=sent_headers) as response:
                    await response.read()
                    ok = response.status == 200
            except aiohttp.ClientError:
                ok = False
            latencies.append(time.perf_counter() - started)
            errors += not ok

    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return LoadResult(len(latencies), time.perf_counter() - started, errors,
                      percentile(latencies, 50) * 1e3, percentile(latencies, 99) * 1e3)


@dataclass
class StreamStats:
    ttft: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)
    streams: int = 0
    errors: int = 0
    started: list[float] = field(default_factory=list)
    ended: list[float] = field(default_factory=list)


def stream_body(model: str) -> bytes:
    return json.dumps({"model": model, "messages": PROMPT, "stream": True}).encode()


async def one_stream(session: aiohttp.ClientSession, url: str, body: bytes, stats: StreamStats, headers: dict[str, str] | None = None) -> None:
    sent = time.perf_counter()
    last = None
    tail = b""
    try:
        async with session.post(url, data=body, headers={"Content-Type": "application/json", **(headers or {})}) as response:
            ok = response.status == 200
            async for chunk in response.content.iter_any():
                now = time.perf_counter()
                if last is None:
                    stats.ttft.append(now - sent)
                    stats.started.append(now)
                else:
                    stats.gaps.append(now - last)
                last = now
                tail = (tail + chunk)[-64:]
    except (aiohttp.ClientError, OSError):
        ok = False
    stats.ended.append(time.perf_counter())
    stats.streams += 1
    if not ok or not tail.endswith(b"data: [DONE]\n\n"):
        stats.errors += 1


async def stream_load(url: str, model: str, concurrency: int, seconds: float, headers: dict[str, str] | None = None) -> StreamStats:
    stats = StreamStats()
    body = stream_body(model)
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline:
            await one_stream(session, url, body, stats, headers)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return stats


async def hold_streams(urls: list[str], count: int, watch_pid: int | None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """`count` streams opened at once and read to the end; the router's RSS sampled meanwhile."""
    stats = StreamStats()
    body = stream_body(HOLD_MODEL)
    peak_rss = 0.0
    stop = asyncio.Event()

    async def sample() -> None:
        nonlocal peak_rss
        while not stop.is_set():
            if watch_pid is not None:
                peak_rss = max(peak_rss, rss_mb(watch_pid))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)

    cpu_before = cpu_seconds(watch_pid) if watch_pid is not None else 0.0
    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        await asyncio.gather(*(one_stream(session, urls[i % len(urls)] + "/v1/chat/completions", body, stats, headers) for i in range(count)))
    elapsed = time.perf_counter() - started
    stop.set()
    await sampler
    # the most streams open at one moment: every stream had its first byte before this one ended
    concurrent = sum(1 for s in stats.started if s < min(stats.ended)) if stats.ended else 0
    result: dict[str, Any] = {
        "streams": count,
        "errors": stats.errors + (count - stats.streams),
        "concurrent": concurrent,
        "seconds": round(elapsed, 2),
        "ttft_p50_ms": round(percentile(stats.ttft, 50) * 1e3, 2),
        "ttft_p99_ms": round(percentile(stats.ttft, 99) * 1e3, 2),
        "gap_p50_ms": round(percentile(stats.gaps, 50) * 1e3, 2),
        "gap_p99_ms": round(percentile(stats.gaps, 99) * 1e3, 2),
    }
    if watch_pid is not None:
        result["peak_rss_mb"] = round(peak_rss, 1)
        result["cpu_s"] = round(cpu_seconds(watch_pid) - cpu_before, 2)
    return result


# profile ------------------------------------------------------------------------------


def profile_router(pid: int, url: str, script: Path, out: Path, seconds: float = 6.0) -> Path | None:
    """py-spy samples of the router under non-streamed load at c16: what bounds it.

    Writes a top-like table (own and total share per function) and, with
    `py-spy record`'s own renderer, a flame graph next to it.
    """
    spy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    if not Path(spy).exists():
        print("bench: py-spy not installed (pip install py-spy): no profile", file=sys.stderr)
        return None
    raw = out / "router-c16.raw"
    load = subprocess.Popen(["wrk", "-t1", "-c16", f"-d{seconds + 2:g}s", "-s", str(script), url],
                            stdout=subprocess.DEVNULL)
    try:
        time.sleep(1)
        subprocess.run([spy, "record", "--pid", str(pid), "--rate", "200", "--duration", f"{seconds:g}",
                        "--nonblocking", "--format", "raw", "--output", str(raw)],
                       capture_output=True, check=False)
    finally:
        load.wait()
    if not raw.exists():
        return None
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        samples += n
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]  # per function, not per line
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + n
    rows = [f"py-spy, router under wrk -c16 for {seconds:g} s: {samples} samples", "", "  %own  %total  function"]
    for frame, n in sorted(own.items(), key=lambda item: -item[1])[:40]:
        rows.append(f"{n / samples * 100:6.1f} {total[frame] / samples * 100:6.1f}  {frame}")
    table = out / "router-c16-profile.txt"
    table.write_text("\n".join(rows) + "\n")
    return table


# the run ------------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    sides: list[Side]
    scripts: dict[str, Path] | None  # wrk's Lua script per side; None: the aiohttp client
    results: dict[str, Any] = field(default_factory=dict)

    def side_names(self) -> list[str]:
        return [s.name for s in self.sides]

    async def load(self, side: Side, concurrency: int, seconds: float) -> LoadResult:
        url = side.fast + "/v1/chat/completions"
        if self.scripts is not None:
            return await asyncio.to_thread(run_wrk, self.scripts[side.name], url, concurrency, seconds)
        return await run_client(url, concurrency, seconds, side.headers)

    async def non_streamed(self, concurrency: int) -> dict[str, Any]:
        per_side: dict[str, list[LoadResult]] = {s.name: [] for s in self.sides}
        cpu: dict[str, float] = {s.name: 0.0 for s in self.sides if s.pid is not None}
        for _ in range(self.args.rounds):
            for side in self.sides:
                cpu_before = cpu_seconds(side.pid) if side.pid is not None else 0.0
                result = await self.load(side, concurrency, self.args.seconds)
                if side.pid is not None:
                    cpu[side.name] += cpu_seconds(side.pid) - cpu_before
                per_side[side.name].append(result)
        out: dict[str, Any] = {}
        for name, runs in per_side.items():
            requests = sum(r.requests for r in runs)
            out[name] = {
                "requests": requests,
                "errors": sum(r.errors for r in runs),
                "rps": round(requests / sum(r.seconds for r in runs), 1),
                "p50_ms": round(statistics.median(r.p50_ms for r in runs), 3),
                "p99_ms": round(statistics.median(r.p99_ms for r in runs), 3),
            }
        for name, seconds in cpu.items():
            out[name]["cpu_us_per_request"] = round(seconds / max(1, out[name]["requests"]) * 1e6, 1)
        return out

    async def streamed(self, concurrency: int) -> dict[str, Any]:
        per_side: dict[str, StreamStats] = {s.name: StreamStats() for s in self.sides}
        for _ in range(self.args.rounds):
            for side in self.sides:
                stats = await stream_load(side.stream + "/v1/chat/completions", STREAM_MODEL, concurrency, self.args.seconds, side.headers)
                merged = per_side[side.name]
                merged.ttft += stats.ttft
                merged.gaps += stats.gaps
                merged.streams += stats.streams
                merged.errors += stats.errors
        return {
            name: {
                "streams": s.streams,
                "errors": s.errors,
                "ttft_p50_ms": round(percentile(s.ttft, 50) * 1e3, 3),
                "ttft_p99_ms": round(percentile(s.ttft, 99) * 1e3, 3),
                "gap_p50_ms": round(percentile(s.gaps, 50) * 1e3, 3),
                "gap_p99_ms": round(percentile(s.gaps, 99) * 1e3, 3),
            }
            for name, s in per_side.items()
        }

    async def warm_up(self) -> None:
        for side in self.sides:
            await stream_load(side.stream + "/v1/chat/completions", STREAM_MODEL, 2, 0.3, side.headers)
            await self.load(side, 16, 1)

    async def run(self) -> dict[str, Any]:
        await self.warm_up()
        results: dict[str, Any] = {"non_streamed": {}, "streaming": {}, "hold": {}}
        for concurrency in self.args.concurrency:
            results["non_streamed"][f"c{concurrency}"] = await self.non_streamed(concurrency)
            print(f"  non-streamed c{concurrency}: {json.dumps(results['non_streamed'][f'c{concurrency}'])}", file=sys.stderr)
        for concurrency in self.args.stream_concurrency:
            results["streaming"][f"c{concurrency}"] = await self.streamed(concurrency)
            print(f"  streaming c{concurrency}: {json.dumps(results['streaming'][f'c{concurrency}'])}", file=sys.stderr)
        for side in self.sides:
            results["hold"][side.name] = await hold_streams(side.hold, self.args.streams, side.pid, side.headers)
            print(f"  held streams, {side.name}: {json.dumps(results['hold'][side.name])}", file=sys.stderr)
        return results


def derive(results: dict[str, Any]) -> dict[str, Any]:
    """Ratios against direct (router, router-redis, nginx), added milliseconds, and the floors."""
    derived: dict[str, Any] = {}
    for level, sides in results["non_streamed"].items():
        direct = sides["direct"]
        for name, mine in sides.items():
            if name != "direct":
                derived[f"{name}_{level}"] = {
                    "rps_ratio": round(mine["rps"] / direct["rps"], 3) if direct["rps"] else None,
                    "added_p50_ms": round(mine["p50_ms"] - direct["p50_ms"], 3),
                    "added_p99_ms": round(mine["p99_ms"] - direct["p99_ms"], 3),
                }
    for level, sides in results["streaming"].items():
        direct = sides["direct"]
        for name, mine in sides.items():
            if name != "direct":
                derived[f"{name}_stream_{level}"] = {
                    key.replace("_ms", "_added_ms"): round(mine[key] - direct[key], 3)
                    for key in ("ttft_p50_ms", "ttft_p99_ms", "gap_p50_ms", "gap_p99_ms")
                }
    ns = results["non_streamed"]
    st = results["streaming"]
    hold = results["hold"]["router"]
    values = {
        "cpu_us_per_request_c16": ns.get("c16", {}).get("router", {}).get("cpu_us_per_request"),
        "rps_ratio_c16": derived.get("router_c16", {}).get("rps_ratio"),
        "added_p50_ms_c1": derived.get("router_c1", {}).get("added_p50_ms"),
        "added_p99_ms_c1": derived.get("router_c1", {}).get("added_p99_ms"),
        "ttft_added_p50_ms_c1": derived.get("router_stream_c1", {}).get("ttft_p50_added_ms"),
        "gap_added_p50_ms": max(
            (derived[f"router_stream_{level}"]["gap_p50_added_ms"] for level in st), default=None
        ),
        "hold_errors": hold["errors"],
        "hold_rss_mb": hold.get("peak_rss_mb"),
    }
    floors_in_force = dict(FLOORS)
    if "router-redis" in results["hold"]:
        derived["redis_vs_local"] = redis_vs_local(results)
        c1 = derived["redis_vs_local"].get("c1", {})
        values["redis_added_p50_ms_c1"] = c1.get("added_p50_ms")
        values["redis_cpu_us_per_request_c16"] = ns.get("c16", {}).get("router-redis", {}).get("cpu_us_per_request")
        floors_in_force.update(REDIS_FLOORS)
    floors = {}
    for key, (label, op, limit, unit) in floors_in_force.items():
        value = values[key]
        met = None if value is None else (value <= limit if op == "<=" else value >= limit)
        floors[key] = {"label": label, "value": value, "floor": f"{op} {limit:g} {unit}".strip(), "met": met}
    derived["floors"] = floors
    return derived


def redis_vs_local(results: dict[str, Any]) -> dict[str, Any]:
    """What Redis-held limits add per request: router-redis against router, at each level."""
    out: dict[str, Any] = {}
    for level, sides in results["non_streamed"].items():
        local, shared = sides["router"], sides["router-redis"]
        out[level] = {
            "added_p50_ms": round(shared["p50_ms"] - local["p50_ms"], 3),
            "added_p99_ms": round(shared["p99_ms"] - local["p99_ms"], 3),
            "rps_ratio": round(shared["rps"] / local["rps"], 3) if local["rps"] else None,
            "cpu_us_added": round(shared["cpu_us_per_request"] - local["cpu_us_per_request"], 1),
            "cpu_ratio": round(shared["cpu_us_per_request"] / local["cpu_us_per_request"], 3) if local["cpu_us_per_request"] else None,
        }
    return out


def write_report(out: Path, name: str, table: str, document: dict[str, Any]) -> None:
    """OUT/NAME.json (meta, results, derived), OUT/NAME.md (the table), and the table on stdout."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(document, indent=2) + "\n")
    (out / f"{name}.md").write_text(table)
    print(table)


def markdown(results: dict[str, Any], derived: dict[str, Any], meta: dict[str, Any]) -> str:
    sides = meta["sides"]
    rows = [f"Router overhead benchmark ({meta['mode']} run, {meta['cpus']} CPUs, load: {meta['load_generator']}, "
            f"{meta['rounds']} rounds of {meta['seconds']:g} s per side, alternating {' / '.join(sides)})", ""]
    others = [s for s in sides if s != "direct"]
    header = "| measure | " + " | ".join(sides) + " |" + "".join(f" {o} vs direct |" for o in others)
    rule = "|" + "---|" * (1 + len(sides) + len(others))
    rows += [header, rule]

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.2f}x" if a is not None and b else "-"

    blank = " |" * len(others)

    def add_row(label: str, values: dict[str, Any], key: str, fmt: str, compare: str = "ratio") -> None:
        cells = [format(values[s][key], fmt) if s in values else "-" for s in sides]
        if compare == "added":
            extra = " | ".join(f"{values[o][key] - values['direct'][key]:+.3f} ms" for o in others) + " |"
        elif compare == "ratio":
            extra = " | ".join(ratio(values[o][key], values["direct"][key]) for o in others) + " |"
        else:
            extra = blank
        rows.append(f"| {label} | " + " | ".join(cells) + " |" + (" " + extra if compare != "none" else extra))

    def router_row(label: str, texts: dict[str, str]) -> None:
        rows.append(f"| {label} | " + " | ".join(texts.get(s, "-") for s in sides) + " |" + blank)

    routers = [s for s in sides if s in ROUTERS]

    for level, values in results["non_streamed"].items():
        add_row(f"non-streamed {level} req/s", values, "rps", ".0f")
        add_row(f"non-streamed {level} p50 ms", values, "p50_ms", ".3f", compare="added")
        add_row(f"non-streamed {level} p99 ms", values, "p99_ms", ".3f", compare="added")
    for level, values in results["streaming"].items():
        for key, label in (("ttft_p50_ms", "TTFT p50 ms"), ("ttft_p99_ms", "TTFT p99 ms"),
                           ("gap_p50_ms", "gap p50 ms"), ("gap_p99_ms", "gap p99 ms")):
            add_row(f"streaming {level} {label}", values, key, ".3f", compare="added")
    hold = results["hold"]
    add_row(f"{meta['streams']} held streams: errors", hold, "errors", "d", compare="none")
    add_row(f"{meta['streams']} held streams: open at once", hold, "concurrent", "d", compare="none")
    for level, values in results["non_streamed"].items():
        router_row(f"router CPU per request, non-streamed {level} (µs)", {r: f"{values[r]['cpu_us_per_request']:.0f}" for r in routers})
    router_row(f"router peak RSS, {meta['streams']} held streams (MB)", {r: f"{hold[r]['peak_rss_mb']:.1f}" for r in routers})
    router_row(f"router CPU, {meta['streams']} held streams (s)", {r: f"{hold[r]['cpu_s']:.2f}" for r in routers})
    if "redis_vs_local" in derived:
        rows += ["", "Redis-held limits against local limits (router-redis vs router, same run):", "",
                 "| level | added p50 ms | added p99 ms | req/s ratio | CPU per request added (µs) | CPU ratio |",
                 "|---|---|---|---|---|---|"]
        for level, d in derived["redis_vs_local"].items():
            rows.append(f"| {level} | {d['added_p50_ms']:+.3f} | {d['added_p99_ms']:+.3f} | {d['rps_ratio']:.2f}x | "
                        f"{d['cpu_us_added']:+.0f} | {d['cpu_ratio']:.2f}x |")
    rows += ["", "| floor | value | limit | met |", "|---|---|---|---|"]
    for floor in derived["floors"].values():
        met = {True: "yes", False: "**no**", None: "-"}[floor["met"]]
        rows.append(f"| {floor['label']} | {floor['value']} | {floor['floor']} | {met} |")
    return "\n".join(rows) + "\n"


async def amain(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="ollama-router-bench-"))
    stack = Stack(workdir)
    use_nginx = shutil.which("nginx") is not None and not args.no_nginx
    use_wrk = shutil.which("wrk") is not None and not args.no_wrk
    try:
        holds_needed = max(1, -(-args.streams // HOLD_SLOTS))
        fast = stack.emulator("emu-fast", FAST_MODEL, tps=0, slots=128)
        stream = stack.emulator("emu-stream", STREAM_MODEL, tps=50, slots=128, tokens=args.stream_tokens)
        holds = [stack.emulator(f"emu-hold-{i}", HOLD_MODEL, tps=args.hold_tps, slots=HOLD_SLOTS, tokens=args.hold_tokens)
                 for i in range(holds_needed)]
        for url in [fast, stream, *holds]:
            await wait_http(url + "/")
        catalog = workdir / "bench-catalog.yaml"
        catalog.write_text(catalog_yaml(fast, stream, holds))
        extra: list[str] = []
        headers: dict[str, str] = {}
        if args.keys:
            extra, headers = bench_key(workdir)
        sides = [Side("direct", fast, stream, holds), await start_router(stack, "router", catalog, args.workers, extra, headers)]
        if args.redis:
            redis_url = await stack.redis()
            sides.append(await start_router(stack, "router-redis", catalog, args.workers, [*extra, "--redis", redis_url], headers))
        router = sides[1]
        assert router.pid is not None
        if use_nginx:
            routes = {"fast": (free_port(), [fast]), "stream": (free_port(), [stream]), "hold": (free_port(), holds)}
            conf = workdir / "nginx.conf"
            conf.write_text(nginx_conf(workdir, routes))
            stack.spawn("nginx", ["nginx", "-c", str(conf), "-p", str(workdir)])
            nginx = {name: f"http://127.0.0.1:{port}" for name, (port, _) in routes.items()}
            for url in nginx.values():
                await wait_http(url + "/")
            sides.append(Side("nginx", nginx["fast"], nginx["stream"], [nginx["hold"]]))
        scripts = {side.name: wrk_script(workdir, side) for side in sides} if use_wrk else None
        bench = Bench(args, sides, scripts)
        print(f"bench: processes in {workdir}; sides {', '.join(bench.side_names())}", file=sys.stderr)
        cpu_start = cpu_seconds(router.pid)
        results = await bench.run()
        results["router_cpu_total_s"] = round(cpu_seconds(router.pid) - cpu_start, 2)
        if args.profile and scripts is not None:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            profile = profile_router(router.pid, router.fast + "/v1/chat/completions", scripts["router"], Path(args.out))
            if profile is not None:
                print(f"bench: router profile in {profile}", file=sys.stderr)
    finally:
        stack.stop()
    meta = {
        "mode": "quick" if args.quick else "full",
        "cpus": os.cpu_count(),
        "load_generator": "wrk -t1 (Lua POST) + asyncio client for streams" if use_wrk else "aiohttp client",
        "rounds": args.rounds,
        "seconds": args.seconds,
        "streams": args.streams,
        "router_workers": args.workers,
        "api_key": args.keys,
        "sides": bench.side_names(),
        "stream_tokens_per_second": 50,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    derived = derive(results)
    table = markdown(results, derived, meta)
    write_report(Path(args.out), "bench", table, {"meta": meta, "results": results, "derived": derived})
    errors = sum(v.get("errors", 0) for level in ("non_streamed", "streaming") for sides in results[level].values() for v in sides.values())
    errors += sum(v["errors"] for v in results["hold"].values())
    if errors:
        print(f"bench: {errors} failed requests or streams", file=sys.stderr)
        return 1
    if args.strict and not all(f["met"] for f in derived["floors"].values()):
        return 1
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short smoke run: 1 round of 1 s, 100 held streams (~30 s)")
    parser.add_argument("--rounds", type=int, default=None, help="A/B rounds per measure (default 2; quick 1)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per side per round (default 4; quick 1)")
    parser.add_argument("--streams", type=int, default=None, help="streams held at once (default 1000; quick 100)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64], help="non-streamed levels")
    parser.add_argument("--stream-concurrency", type=int, nargs="+", default=[1, 64], help="streaming levels")
    parser.add_argument("--stream-tokens", type=int, default=6, help="tokens per measured stream (default 6, at 50/s: more streams, more TTFT samples)")
    parser.add_argument("--hold-tps", type=float, default=5.0, help="tokens/s of the held streams (default 5)")
    parser.add_argument("--hold-tokens", type=int, default=None, help="tokens per held stream (default 15; quick 5)")
    parser.add_argument("--workers", type=int, default=1, help="router worker processes (serve --workers)")
    parser.add_argument("--redis", action="store_true", help="one more side: a router with its limits in Redis (serve --redis; needs redis-server)")
    parser.add_argument("--keys", action="store_true", help="the routers require an API key with a rate limit and max_concurrent (never reached)")
    parser.add_argument("--no-nginx", action="store_true", help="leave nginx out even when installed")
    parser.add_argument("--no-wrk", action="store_true", help="the aiohttp client even when wrk is installed")
    parser.add_argument("--profile", action="store_true", help="after the measures, py-spy the router under c16 load (bench-results/router-c16-profile.txt)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a floor is not met")
    parser.add_argument("--out", default=str(REPO / "bench-results"), help="where bench.json and bench.md go")
    args = parser.parse_args(argv)
    quick = args.quick
    args.rounds = args.rounds or (1 if quick else 2)
    args.seconds = args.seconds or (1.0 if quick else 4.0)
    args.streams = args.streams or (100 if quick else 1000)
    args.hold_tokens = args.hold_tokens or (5 if quick else 15)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(amain(args))
    return uvloop.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
