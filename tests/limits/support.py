"""Router processes (`ollama-router serve`, real subprocesses) sharing limits through Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import redis

from tests.harness import REPO, free_port, stop_process

MODEL = "llama3.2:3b"
PROMPT = "What does a limit shared by two routers look like?"
MESSAGES = [{"role": "user", "content": PROMPT}]


def catalog_text(backend_url: str, namespace: str, *, num_parallel: int = 2, **router: str) -> str:
    """One container, one model; the router settings given (e.g. redis_lease="2s")."""
    settings = {"health_interval": "1s", "queue_timeout": "30s", "redis_prefix": namespace, **router}
    section = ", ".join(f"{name}: {value}" for name, value in settings.items())
    return f"""
version: 1
defaults: {{num_parallel: {num_parallel}}}
router: {{{section}}}
containers:
  a: {{url: '{backend_url}'}}
models:
  {MODEL}: {{containers: [a]}}
"""


class RouterProcess:
    """`ollama-router serve CATALOG --redis URL ...` on a free loopback port."""

    def __init__(self, workdir: Path, catalog: Path, redis_url: str, *args: str, name: str = "router") -> None:
        self.port = free_port()
        self.log = workdir / f"{name}.log"
        code = "import sys; from router.cli import main; sys.exit(main(sys.argv[1:]))"
        argv = [sys.executable, "-c", code, "serve", str(catalog), "--port", str(self.port), "--no-pull", "--no-keep-warm",
                "--redis", redis_url, *args]
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def openai(self, key: str = "none") -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0)

    async def wait_ready(self, timeout: float = 30.0) -> None:
        await until_answer(self.url + "/readyz", lambda status, _: status == 200, timeout, self.process)

    async def get(self, path: str, key: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with aiohttp.ClientSession() as session, session.get(self.url + path, headers=headers) as response:
            body = await response.read()
            return response.status, body

    async def limits(self, key: str | None = None) -> dict[str, Any]:
        """The `limits` block of /router/status."""
        status, body = await self.get("/router/status", key)
        assert status == 200, body
        limits: dict[str, Any] = orjson.loads(body)["limits"]
        return limits

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        stop_process(self.process, 30)


async def until_answer(
    url: str, done: Callable[[int, bytes], bool], timeout: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """GET `url` until `done(status, body)`, within `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            assert process is None or process.poll() is None, "the router exited"
            try:
                async with session.get(url) as response:
                    if done(response.status, await response.read()):
                        return
            except aiohttp.ClientError:
                pass
            assert asyncio.get_running_loop().time() < deadline, f"{url} never answered as expected"
            await asyncio.sleep(0.1)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def stored(url: str, namespace: str) -> bytes:
    """Every key name, member, field and value under the namespace, as one blob."""
    client = redis.Redis.from_url(url)
    blob = []
    for key in client.scan_iter(match=f"{{{namespace}}}:*"):
        blob.append(key)
        kind = client.type(key)
        if kind == b"zset":
            blob += [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == b"list":
            blob += client.lrange(key, 0, -1)
        elif kind == b"hash":
            for field, value in client.hgetall(key).items():
                blob += [field, value]
        elif kind == b"string":
            blob.append(client.get(key) or b"")
    return b"\n".join(blob)
