"""`ollama-router` commands as child processes: started on a free port, waited
on until ready, stopped by PID (SIGTERM, then SIGKILL), their exit status checked."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tests.harness import REPO, free_port

COMMAND = [sys.executable, "-m", "router.cli"]


@dataclass
class Child:
    process: subprocess.Popen[bytes]
    url: str
    log: Path  # its stdout and stderr


@contextlib.asynccontextmanager
async def router_process(args: list[str], log: Path, *, port: int | None = None, ready_within: float = 30.0) -> AsyncIterator[Child]:
    """`ollama-router ARGS --port PORT` (a free one by default), once its /readyz says ready.
    SIGTERM at the end; exit status 0 expected."""
    port = free_port() if port is None else port
    with log.open("wb") as out:
        process = subprocess.Popen([*COMMAND, *args, "--port", str(port)], cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    child = Child(process, f"http://127.0.0.1:{port}", log)
    try:
        await _wait_ready(child, ready_within)
        yield child
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
        try:
            code = process.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
            raise
    assert code == 0, log.read_text()[-4000:]


async def _wait_ready(child: Child, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as session:
        while asyncio.get_running_loop().time() < deadline:
            assert child.process.poll() is None, child.log.read_text()
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(child.url + "/readyz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise TimeoutError(child.log.read_text())
