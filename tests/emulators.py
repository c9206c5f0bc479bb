"""Start an emulator for tests, benchmarks and demos, and drive its control surface.

    handle = start_emulator(EmulatorConfig(models=["llama3.2"]))              # thread, own loop
    handle = start_emulator(EmulatorConfig(models=["llama3.2"]), subprocess=True)  # real process
    handle.url, handle.port, handle.pid, handle.stats(), handle.add_fault("busy", count=2)
    handle.kill(); handle.close()

The in-process flavour runs the server on its own event loop in a daemon
thread, so sync clients (ollama.Client, openai.OpenAI) and async ones in the
caller's loop can both talk to it. The subprocess flavour runs
`python -m router.emulator` and can be SIGKILLed like a crashed container.
Control calls are plain blocking HTTP (urllib): fine from sync or async code
because the server never shares the caller's loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess as sp
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field, replace
from typing import Any

from router.emulator.config import EmulatorConfig
from router.emulator.state import Emulator


def _http(method: str, url: str, body: object = None, timeout: float = 10.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def config_argv(config: EmulatorConfig) -> list[str]:
    """The command-line flags that reproduce `config` (host/port included)."""
    argv = [
        "--host", config.host, "--port", str(config.port),
        "--load-time", str(config.load_time), "--tokens-per-second", str(config.tokens_per_second),
        "--num-parallel", str(config.num_parallel), "--max-queue", str(config.max_queue),
        "--max-loaded-models", str(config.max_loaded_models), "--keep-alive", str(config.keep_alive),
        "--version", config.version, "--response-tokens", str(config.response_tokens),
        "--context-length", str(config.context_length), "--pull-time", str(config.pull_time),
    ]
    for name in config.models:
        argv += ["--model", name]
    for name in config.embedding_models:
        argv += ["--embedding-model", name]
    if not config.allow_pull:
        argv.append("--no-pull")
    if not config.check_host:
        argv.append("--no-host-check")
    for origin in config.origins:
        argv += ["--origin", origin]
    for name in config.audio_models:
        argv += ["--audio-model", name]
    if config.vram_gib:
        argv += ["--vram-gib", str(config.vram_gib)]
    if config.no_cloud:
        argv.append("--no-cloud")
    return argv


@dataclass
class EmulatorHandle:
    """A running emulator, whichever way it was started."""

    config: EmulatorConfig
    url: str = ""
    port: int = 0
    pid: int | None = None  # set for subprocesses only
    process: sp.Popen[str] | None = None
    state: Emulator | None = None  # in-process only: the live scheduler, store, stats
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _running: Any = None
    _closed: bool = field(default=False)

    # -- control surface ------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return _http("GET", self.url + "/_emulator/stats")

    def add_fault(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Arm a fault: kind in error|busy|hang|cut|slow|load_fail; fields as in faults.py."""
        return _http("POST", self.url + "/_emulator/faults", {"kind": kind, **fields})

    def faults(self) -> list[dict[str, Any]]:
        return _http("GET", self.url + "/_emulator/faults")["faults"]

    def clear_faults(self) -> None:
        _http("DELETE", self.url + "/_emulator/faults")

    # -- lifecycle -------------------------------------------------------------------

    def kill(self) -> None:
        """Die abruptly: SIGKILL for a subprocess; an in-process one drops everything."""
        if self.process is not None:
            if self.process.poll() is None:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
            self._closed = True
            return
        self.close(timeout=0.0)

    def close(self, timeout: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        if self.process is not None:
            if self.process.poll() is None:
                os.kill(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(timeout=timeout or 5.0)
                except sp.TimeoutExpired:
                    os.kill(self.process.pid, signal.SIGKILL)
                    self.process.wait(timeout=10)
            return
        if self._loop is not None and self._running is not None:
            future = asyncio.run_coroutine_threadsafe(self._running.close(), self._loop)
            try:
                future.result(timeout=10)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                if self._thread is not None:
                    self._thread.join(timeout=10)

    def __enter__(self) -> EmulatorHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _start_thread(config: EmulatorConfig) -> EmulatorHandle:
    from router.emulator.server import run_emulator

    handle = EmulatorHandle(config)
    ready = threading.Event()
    failure: list[BaseException] = []
    loop = _new_loop()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            handle._running = loop.run_until_complete(run_emulator(config))
        except BaseException as exc:  # surfaced to the caller below
            failure.append(exc)
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    thread = threading.Thread(target=serve, name=f"ollama-emulator:{config.port}", daemon=True)
    thread.start()
    ready.wait(timeout=30)
    if failure:
        raise failure[0]
    handle._loop, handle._thread = loop, thread
    handle.url, handle.port = handle._running.url, handle._running.port
    handle.state = handle._running.emulator
    return handle


def _start_process(config: EmulatorConfig, timeout: float = 30.0) -> EmulatorHandle:
    argv = [sys.executable, "-m", "router.emulator", *config_argv(config)]
    # stderr goes to a file, never a pipe nobody drains (a full pipe would stall the server).
    stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 - the handle closes it with the process
    env = {**os.environ, "OLLAMA_NO_CLOUD": "1" if config.no_cloud_env else ""}
    process = sp.Popen(argv, stdout=sp.PIPE, stderr=stderr, text=True, env=env)
    handle = EmulatorHandle(config, pid=process.pid, process=process)
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    line = ""
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if " listening on " in line or process.poll() is not None:
            break
    if " listening on " not in line:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        stderr.seek(0)
        raise RuntimeError(f"emulator did not start: {line!r} {stderr.read()[-2000:]}")
    handle.url = line.split(" listening on ", 1)[1].split()[0]
    handle.port = int(handle.url.rsplit(":", 1)[1])
    return handle


def start_emulator(config: EmulatorConfig | None = None, *, subprocess: bool = False, **fields: Any) -> EmulatorHandle:
    """Start an emulator on a free loopback port unless `config.port` says otherwise."""
    config = replace(config or EmulatorConfig(port=0), **fields)
    return _start_process(config) if subprocess else _start_thread(config)
