#!/usr/bin/env python3
"""Emulator throughput: non-streamed /v1/chat/completions at concurrency 16.

Starts one emulator process (`python -m router.emulator --tokens-per-second 0`)
on a free loopback port and drives it with **wrk** (Debian: `apt-get install wrk`)
using a Lua script for the POST body; wrk is a C load generator, so the
figure measures the emulator, not the client. Without wrk it falls back to
an aiohttp client in this process (it says so: that figure is a lower bound,
the Python client being the likely bottleneck on 2 cores).

The issue's floor is 3,000 requests/s on a 2-core machine.

    .venv/bin/python scripts/bench_emulator.py [--duration 10] [--connections 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from router.emulator.config import EmulatorConfig
from tests.emulators import start_emulator

MODEL = "llama3.2"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Why is the sky blue?"}]}
FLOOR_RPS = 3000.0
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format("BENCH_ERRORS %d %d\\n", summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def _cpu_seconds(pid: int | None) -> float:
    """User+system CPU time of the emulator process (0 when psutil is missing)."""
    try:
        import psutil
    except ImportError:
        return 0.0
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def run_wrk(url: str, connections: int, duration: float, threads: int) -> tuple[float, str]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT.format(body=json.dumps(BODY)))
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, int(duration))}s",
        "-s", script.name, url + "/v1/chat/completions",
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    Path(script.name).unlink(missing_ok=True)
    match = re.search(r"Requests/sec:\s*([\d.]+)", output)
    errors = re.search(r"BENCH_ERRORS (\d+) (\d+)", output)
    if errors and (int(errors.group(1)) or int(errors.group(2))):
        raise SystemExit(f"wrk saw errors (non-2xx, socket):\n{output}")
    return float(match.group(1)) if match else 0.0, output


async def run_python_client(url: str, connections: int, duration: float) -> float:
    import aiohttp

    body = json.dumps(BODY).encode()
    done = 0
    deadline = time.monotonic() + duration

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            async with session.post(url + "/v1/chat/completions", data=body) as response:
                await response.read()
                if response.status != 200:
                    raise SystemExit(f"status {response.status}")
            done += 1

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.monotonic()
        await asyncio.gather(*(worker(session) for _ in range(connections)))
        return done / (time.monotonic() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load (default 10)")
    parser.add_argument("--connections", type=int, default=16, help="concurrency (default 16)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: leave a core to the emulator)")
    parser.add_argument("--num-parallel", type=int, default=1, help="emulator slots per model (default 1, as Ollama)")
    args = parser.parse_args()

    config = EmulatorConfig(port=0, models=[MODEL], tokens_per_second=0, num_parallel=args.num_parallel)
    with start_emulator(config, subprocess=True) as emulator:
        # Warm up: load the model, fill caches.
        request = urllib.request.Request(
            emulator.url + "/v1/chat/completions", data=json.dumps(BODY).encode(), method="POST"
        )
        urllib.request.urlopen(request, timeout=10).read()
        cpu_before = _cpu_seconds(emulator.pid)
        served_before = emulator.stats()["requests"]
        if shutil.which("wrk"):
            rps, _output = run_wrk(emulator.url, args.connections, args.duration, args.threads)
            client = f"wrk -t{args.threads} -c{args.connections} -d{int(args.duration)}s (Lua POST)"
        else:
            print("wrk not found: falling back to an in-process aiohttp client (a lower bound)", file=sys.stderr)
            rps = asyncio.run(run_python_client(emulator.url, args.connections, args.duration))
            client = f"python aiohttp client, {args.connections} workers"
        served = emulator.stats()["requests"] - served_before
        cpu = _cpu_seconds(emulator.pid) - cpu_before
    verdict = "OK" if rps >= FLOOR_RPS else "BELOW FLOOR"
    print(f"emulator non-streamed /v1/chat/completions, tokens_per_second=0, concurrency {args.connections}")
    print(f"load generator: {client}; emulator served {served} requests")
    print(f"{rps:.0f} requests/s  (floor {FLOOR_RPS:.0f}: {verdict})")
    if served and cpu > 0:
        # Robust to other load on the machine: what one core of emulator time buys.
        per_request = cpu / served * 1e6
        print(f"emulator CPU {per_request:.0f} us/request -> {1e6 / per_request:.0f} requests/s per busy core")
    return 0 if rps >= FLOOR_RPS else 1


if __name__ == "__main__":
    sys.exit(main())
