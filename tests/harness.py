"""A router in front of real emulators on loopback, for the router's tests.

`async with router_fleet(CATALOG_YAML) as fleet:` starts one emulator per
catalog container (in this process, or as a child process when the test
needs to SIGKILL it), points the catalog at them, starts the router on a free
port, and waits until `/readyz` says ready (unless told not to).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from router.catalog import Catalog, parse_catalog
from router.emulator.server import EmulatorConfig, RunningEmulator, run_emulator
from router.events import EventHub
from router.fleet.fleet import Fleet, FleetPolicy
from router.limits.local import LocalLimits
from router.server.app import create_app
from router.server.context import SERVICES
from router.server.runner import RunningApp, start_app
from router.server.runtime import Services
from router.settings import RouterSettings
from tests.emulators import config_argv


def fleet_of(catalog: Catalog, **policy: Any) -> Fleet:
    """A fleet for `catalog` (no network), with local limits and its own event hub."""
    return Fleet(catalog, FleetPolicy(**policy), limits=LocalLimits(), events=EventHub())


def catalog_yaml(*containers: str, models: dict[str, str], container_extra: str = "") -> str:
    """A catalog's YAML: each of `containers` on its own GPU (the i-th on GPU i, port i + 1,
    plus `container_extra` such as "num_parallel: 1"), then `models` as name -> mapping body."""
    extra = f", {container_extra}" if container_extra else ""
    lines = ["", "version: 1", "containers:"]
    lines += [f"  {name}: {{gpus: [{i}], port: {i + 1}{extra}}}" for i, name in enumerate(containers)]
    lines += ["models:", *(f"  {name}: {{{spec}}}" for name, spec in models.items())]
    return "\n".join(lines) + "\n"


# The smallest catalog: one model on one container.
ONE_CONTAINER = catalog_yaml("a", models={"llama3.2:3b": "containers: [a]"})


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


async def curl(*args: str) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one `curl -i` (a child process: the router runs in the test's loop)."""
    process = await asyncio.create_subprocess_exec(
        "curl", "-sS", "-i", "--max-time", "30", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    head, _, body = out.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 100"):  # the 100 Continue curl waited for before a large upload
        head, _, body = body.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, body


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Backend:
    """One emulated container: in-process or a child process."""

    name: str
    url: str
    port: int
    running: RunningEmulator | None = None
    process: subprocess.Popen[bytes] | None = None
    args: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        async with aiohttp.ClientSession() as session, session.request(method, self.url + path, **kwargs) as response:
            response.raise_for_status()
            return await response.json(content_type=None)

    async def stats(self) -> dict[str, Any]:
        return await self.request("GET", "/_emulator/stats")  # type: ignore[no-any-return]

    async def add_fault(self, kind: str, count: int = 1, **fields: Any) -> None:
        await self.request("POST", "/_emulator/faults", json={"kind": kind, "count": count, **fields})

    async def clear_faults(self) -> None:
        await self.request("DELETE", "/_emulator/faults")

    def kill(self) -> None:
        """SIGKILL the child process (only for subprocess backends)."""
        assert self.process is not None, "start this backend with subprocess=True to kill it"
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(5)

    async def restart(self) -> None:
        """Start the killed child process again on the same port."""
        assert self.args, "only subprocess backends restart"
        self.process = _spawn(self.args)
        await _wait_listening(self.url)

    async def close(self) -> None:
        if self.running is not None:
            await self.running.close()
        if self.process is not None:
            stop_process(self.process, 5)


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM by PID; SIGKILL when it has not exited within `timeout`."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(5)


def _spawn(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "router.emulator", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _wait_listening(url: str, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url + "/") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"emulator at {url} did not start")
            await asyncio.sleep(0.05)


@dataclass
class RouterFleet:
    router: RunningApp
    backends: dict[str, Backend]
    catalog: Catalog
    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return self.router.url

    @property
    def services(self) -> Services:
        return self.router.runner.app[SERVICES]

    async def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            async with self.session.get(self.url + "/readyz") as response:
                await response.read()
                if response.status == 200:
                    return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("router never became ready")
            await asyncio.sleep(0.05)

    async def wait_warm(self, timeout: float = 15.0) -> None:
        """Until `/router/status` shows every model loaded on every one of its containers."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            models = (await self.status())["models"]
            if all(set(m["ready"]) == set(m["containers"]) for m in models):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"models never all loaded: {models}")
            await asyncio.sleep(0.05)

    async def status(self) -> dict[str, Any]:
        async with self.session.get(self.url + "/router/status") as response:
            return await response.json()  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def router_fleet(
    catalog_yaml: str,
    *,
    emulator: dict[str, Any] | None = None,
    per_container: dict[str, dict[str, Any]] | None = None,
    subprocess_containers: frozenset[str] | set[str] = frozenset(),
    settings: dict[str, Any] | None = None,
    wait_ready: bool = True,
) -> AsyncIterator[RouterFleet]:
    """Emulators for every container of `catalog_yaml`, and the router in front.

    `emulator`: EmulatorConfig fields for every backend (e.g. tokens_per_second);
    `per_container`: overrides by container name; `settings`: RouterSettings fields.
    """
    result = parse_catalog(textwrap.dedent(catalog_yaml), "test-catalog.yaml")
    catalog = result.catalog
    backends: dict[str, Backend] = {}
    containers = {}
    router: RunningApp | None = None
    session = aiohttp.ClientSession()
    try:
        for name, container in catalog.containers.items():
            models = catalog.models_on(name)
            fields: dict[str, Any] = {
                "host": "127.0.0.1",
                "port": 0,
                "models": [m.tag for m in models if not m.is_embedding],
                "embedding_models": [m.tag for m in models if m.is_embedding],
                "num_parallel": container.num_parallel,
                **(emulator or {}),
                **((per_container or {}).get(name, {})),
            }
            config = EmulatorConfig(**fields)
            if name in subprocess_containers:
                config.port = config.port or free_port()
                args = config_argv(config)
                backend = Backend(name, f"http://127.0.0.1:{config.port}", config.port, process=_spawn(args), args=args)
                await _wait_listening(backend.url)
            else:
                running = await run_emulator(config)
                backend = Backend(name, running.url, running.port, running=running)
            backends[name] = backend
            containers[name] = dataclasses.replace(container, url=backend.url)
        catalog = dataclasses.replace(catalog, containers=containers)
        router_settings = RouterSettings.load(catalog.router, **{"port": 0, **(settings or {})})
        router = await start_app(create_app(catalog, router_settings), "127.0.0.1", 0)
        fleet = RouterFleet(router, backends, catalog, session)
        if wait_ready:
            await fleet.wait_ready()
        yield fleet
    finally:
        if router is not None:
            await router.close()
        for backend in backends.values():
            await backend.close()
        await session.close()


@contextlib.contextmanager
def router_in_thread(open_router: Callable[[], contextlib.AbstractAsyncContextManager[str]], name: str) -> Iterator[int]:
    """The router `open_router` starts (it yields its URL) run in a thread with an event loop
    of its own, so that synchronous code (hypothesis) can drive it; yields its port."""
    started = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        async with open_router() as url:
            box["port"], box["stop"] = int(url.rsplit(":", 1)[1]), asyncio.Event()
            started.set()
            await box["stop"].wait()

    def run() -> None:
        loop = box["loop"] = asyncio.new_event_loop()
        try:
            loop.run_until_complete(serve())
        except BaseException as exc:  # surfaced below
            box["error"] = exc
        finally:
            started.set()
            loop.close()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    started.wait(30)
    assert "port" in box, f"router did not start: {box.get('error')!r}"
    try:
        yield box["port"]
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(15)
