"""A real redis-server on loopback for the shared-limits tests (Debian's package;
`./scripts/test` installs it when run as root and starts one the tests share,
OLLAMA_ROUTER_TEST_REDIS_URL). Tests that kill Redis start their own here, with
its own directory, and stop it by PID."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.harness import free_port, stop_process

BINARY = shutil.which("redis-server")
MISSING = "redis-server is not installed: ./scripts/test installs it (apt-get) when run as root"


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process: no persistence, loopback only."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        assert BINARY is not None, MISSING
        self.directory = directory
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> RedisServer:
        assert BINARY is not None, MISSING
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = [BINARY, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                "--save", "", "--appendonly", "no", "--logfile", str(self.directory / "redis.log")]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start (see {self.directory / 'redis.log'})")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing is saved, the data is gone."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, 10)
