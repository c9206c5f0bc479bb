"""`serve --workers N`: N processes share the port (SO_REUSEPORT) and all answer."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson

from router.catalog import parse_catalog
from router.server.workers import share_capacity
from tests.conftest import EmulatorFactory
from tests.harness import REPO, free_port

MODEL = "llama3.2:3b"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False}


def _catalog(url: str) -> str:
    return f"""
version: 1
defaults: {{num_parallel: 4}}
router: {{health_interval: 1s}}
containers:
  a: {{url: '{url}'}}
models:
  {MODEL}: {{containers: [a]}}
"""


def _serve(catalog: Path, port: int, log: Path, workers: int) -> subprocess.Popen[bytes]:
    code = "import sys; from router.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = [sys.executable, "-c", code, "serve", str(catalog), "--port", str(port), "--workers", str(workers), "--no-pull"]
    with open(log, "wb") as out:
        return subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _log_lines(log: Path) -> list[dict[str, object]]:
    lines = []
    for raw in log.read_bytes().splitlines():
        if raw.startswith(b"{"):
            lines.append(orjson.loads(raw))
    return lines


async def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "serve exited early"
            try:
                async with session.get(url + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError("router never became ready")


async def test_two_workers_share_the_port_and_both_answer(emulator: EmulatorFactory, tmp_path: Path) -> None:
    backend = emulator(models=[MODEL], embedding_models=[], num_parallel=4)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(_catalog(backend.url))
    log = tmp_path / "router.log"
    port = free_port()
    proc = _serve(catalog, port, log, workers=2)
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_ready(url, proc)
        workers = _children(proc.pid)
        assert len(workers) == 2
        # New connections each time: the kernel spreads them over the two listening sockets.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(40):
                async with session.post(url + "/v1/chat/completions", json=CHAT) as response:
                    assert response.status == 200
                    assert (await response.json())["model"] == MODEL
                    assert response.headers["X-Router-Container"] == "a"
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    lines = _log_lines(log)
    answered = {line.get("worker") for line in lines if line.get("event") == "request" and line.get("path") == "/v1/chat/completions"}
    assert answered == {0, 1}
    # Each worker probed and preloaded by itself (each has its own fleet state).
    preloads = {line.get("worker") for line in lines if line.get("event") == "preload_done"}
    assert preloads == {0, 1}
    ids = [line["request_id"] for line in lines if line.get("event") == "request"]
    assert len(ids) == len(set(ids))  # request ids stay unique across forked workers


async def test_busy_port_fails_before_forking(tmp_path: Path, emulator: EmulatorFactory) -> None:
    backend = emulator(models=[MODEL], embedding_models=[])
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(_catalog(backend.url))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _serve(catalog, port, tmp_path / "router.log", workers=2)
        assert proc.wait(30) == 1
    assert "cannot listen" in (tmp_path / "router.log").read_text()


def test_capacity_divided_among_workers() -> None:
    text = """
version: 1
containers:
  a: {port: 11501, num_parallel: 4}
  b: {port: 11502, num_parallel: 1}
models:
  llama3.2:3b: {containers: [a, b]}
"""
    catalog = parse_catalog(text, "c.yaml").catalog
    shared = share_capacity(catalog, 3)
    assert shared.containers["a"].num_parallel == 2  # ceil(4 / 3)
    assert shared.containers["b"].num_parallel == 1
    assert share_capacity(catalog, 1) is catalog


async def test_a_worker_that_dies_is_started_again(emulator: EmulatorFactory, tmp_path: Path) -> None:
    backend = emulator(models=[MODEL], embedding_models=[])
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(_catalog(backend.url))
    port = free_port()
    proc = _serve(catalog, port, tmp_path / "router.log", workers=2)
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_ready(url, proc)
        before = _children(proc.pid)
        os.kill(before[0], signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            now = _children(proc.pid)
            if len(now) == 2 and before[0] not in now:
                break
            await asyncio.sleep(0.1)
        assert len(now) == 2 and before[0] not in now and before[1] in now
        await _wait_ready(url, proc)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            for _ in range(10):
                async with session.post(url + "/v1/chat/completions", json=CHAT) as response:
                    assert response.status == 200
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 0
