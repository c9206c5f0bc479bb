"""Active health: one background task per container probes it every
`health_interval` (`GET /`, `/api/version`, `/api/ps`, `/api/tags`).

A container that is down is re-probed with exponential backoff (tenacity)
and comes back on the first good probe. Passive failures reported by the
request path wake its task early. Probes only say whether a container
answers: an ejection (real requests failing) outlasts good probes. Nothing
here is awaited by a request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import aiohttp
import orjson
import structlog
from tenacity import AsyncRetrying, retry_if_result, wait_exponential

from router import wire
from router.catalog.names import model_key
from router.fleet.fleet import Fleet
from router.fleet.state import ContainerState, LoadedModel, Phase

log = structlog.get_logger("router.health")

ProbeListener = Callable[[ContainerState], Awaitable[None]]


def parse_timestamp(text: Any) -> float | None:
    """RFC 3339 with nanoseconds (Go) to epoch seconds."""
    if not isinstance(text, str):
        return None
    try:
        head, dot, rest = text.partition(".")
        if dot:
            zone = rest.lstrip("0123456789")  # the offset's digits are not the fraction's
            digits = rest[: len(rest) - len(zone)]
            text = f"{head}.{digits[:6]}{zone}"
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def loaded_models(ps: dict[str, Any]) -> dict[str, LoadedModel]:
    loaded: dict[str, LoadedModel] = {}
    for entry in ps.get("models") or []:
        if not isinstance(entry, dict):
            continue
        name = entry.get("model") or entry.get("name") or ""
        key = model_key(name) if isinstance(name, str) else None
        if key:
            context = entry.get("context_length")
            loaded[key] = LoadedModel(
                name=name,
                key=key,
                expires_at=parse_timestamp(entry.get("expires_at")),
                size_vram=int(entry.get("size_vram") or 0),
                context_length=context if isinstance(context, int) else None,
                raw=entry,
            )
    return loaded


class ProbeFailed(Exception):
    pass


async def _get(session: aiohttp.ClientSession, url: str) -> bytes:
    async with session.get(url) as response:
        body = await response.read()
        if response.status != 200:
            raise ProbeFailed(f"GET {url}: HTTP {response.status}")
        return body


class HealthMonitor:
    def __init__(self, fleet: Fleet, *, interval: float, probe_timeout: float, on_probe: ProbeListener | None = None) -> None:
        self.fleet = fleet
        self.interval = interval
        self.probe_timeout = probe_timeout
        self.on_probe = on_probe
        self._tasks: dict[ContainerState, asyncio.Task[None]] = {}

    def configure(self, *, interval: float, probe_timeout: float) -> None:
        """New settings (a reload): the next round of every task uses them."""
        self.interval, self.probe_timeout = interval, probe_timeout

    async def probe(self, state: ContainerState) -> bool:
        """One full probe; reports it to the fleet and returns whether the container answered."""
        session = state.client.http()
        base = state.url
        try:
            async with asyncio.timeout(self.probe_timeout):
                root = await _get(session, f"{base}/")
                if root != wire.OLLAMA_RUNNING:
                    raise ProbeFailed(f"GET {base}/ did not answer 'Ollama is running'")
                version = orjson.loads(await _get(session, f"{base}/api/version")).get("version")
                loaded = loaded_models(orjson.loads(await _get(session, f"{base}/api/ps")))
                tags = list(orjson.loads(await _get(session, f"{base}/api/tags")).get("models") or [])
        # A malformed answer is a failed probe, not the end of this container's health task.
        except (aiohttp.ClientError, OSError, TimeoutError, ProbeFailed, ValueError, TypeError, AttributeError) as exc:
            self.fleet.probe_failed(state, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            return False
        self.fleet.probe_passed(state, version=version if isinstance(version, str) else None, loaded=loaded, tags=tags)
        return True

    async def _watch(self, state: ContainerState) -> None:
        while state.phase is not Phase.DRAINING:
            state.wakeup.clear()  # before probing: a failure reported meanwhile wakes the next round
            if state.phase is Phase.DOWN:
                await self._until_up(state)
            else:
                await self.probe(state)
            if state.phase is not Phase.DOWN and self.on_probe is not None:
                try:
                    await self.on_probe(state)
                except Exception:  # a listener's bug must not end this container's probing
                    log.exception("probe_listener_failed", container=state.name)
            try:
                async with asyncio.timeout(self.interval):
                    await state.wakeup.wait()
            except TimeoutError:
                pass

    async def _until_up(self, state: ContainerState) -> None:
        """Probe a down container with backoff until it answers again."""
        retrying = AsyncRetrying(
            wait=wait_exponential(multiplier=0.1, min=0.1, max=max(self.interval, 0.1)),
            retry=retry_if_result(lambda up: not up and state.phase is not Phase.DRAINING),
        )
        await retrying(self.probe, state)

    async def probe_all(self, states: list[ContainerState] | None = None) -> None:
        await asyncio.gather(*(self.probe(s) for s in (states if states is not None else self.fleet.containers.values())))

    def watch(self, state: ContainerState) -> None:
        if state not in self._tasks:
            self._tasks[state] = asyncio.create_task(self._watch(state), name=f"health:{state.name}")

    def start(self) -> None:
        for state in self.fleet.containers.values():
            self.watch(state)

    def forget(self, state: ContainerState) -> None:
        """Stop probing a container that left the catalog."""
        task = self._tasks.pop(state, None)
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def running(self) -> bool:
        return any(not t.done() for t in self._tasks.values())
