"""Active health: one background task per container probes it every
`health_interval` (`GET /`, `/api/version`, `/api/ps`, `/api/tags`).

A container that is down is re-probed with exponential backoff (tenacity)
and marked up on the first good probe. Passive failures reported by the
request path wake the task early. Nothing here is awaited by a request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import aiohttp
import orjson
import structlog
from tenacity import AsyncRetrying, retry_if_result, wait_exponential

from router import wire
from router.catalog.names import model_key
from router.fleet.state import DOWN, UP, ContainerGone, ContainerState, Fleet, LoadedModel

log = structlog.get_logger("router.health")

ProbeListener = Callable[[ContainerState], Awaitable[None] | None]


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
        name = entry.get("model") or entry.get("name") or ""
        key = model_key(name)
        if key:
            loaded[key] = LoadedModel(
                name=name,
                key=key,
                expires_at=parse_timestamp(entry.get("expires_at")),
                size_vram=int(entry.get("size_vram") or 0),
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
    def __init__(
        self,
        fleet: Fleet,
        *,
        interval: float,
        probe_timeout: float,
        on_probe: ProbeListener | None = None,
    ) -> None:
        self.fleet = fleet
        self.interval = interval
        self.probe_timeout = probe_timeout
        self.on_probe = on_probe
        self._tasks: list[asyncio.Task[None]] = []

    async def probe(self, state: ContainerState) -> bool:
        """One full probe; updates the state and returns whether the container is up."""
        assert state.session is not None
        base = state.url
        try:
            async with asyncio.timeout(self.probe_timeout):
                root = await _get(state.session, f"{base}/")
                if root != wire.OLLAMA_RUNNING:
                    raise ProbeFailed(f"GET {base}/ did not answer 'Ollama is running'")
                version = orjson.loads(await _get(state.session, f"{base}/api/version")).get("version")
                loaded = loaded_models(orjson.loads(await _get(state.session, f"{base}/api/ps")))
                tags = list(orjson.loads(await _get(state.session, f"{base}/api/tags")).get("models") or [])
        # A malformed answer is a failed probe, not the end of this container's health task.
        except (aiohttp.ClientError, OSError, TimeoutError, ProbeFailed, ValueError, TypeError, AttributeError) as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            state.last_probe = time.time()
            state.consecutive_failures += 1
            if state.mark_down(reason):
                state.wake_all(ContainerGone(state.name))
                log.warning("container_down", container=state.name, reason=reason)
            return False
        state.last_probe = time.time()
        state.version = version if isinstance(version, str) else None
        state.loaded = loaded
        state.tags = tags
        if state.generation_failed is not None:  # it answers probes but not generations
            state.mark_down(state.generation_failed)
            return False
        if state.mark_up():
            log.info("container_up", container=state.name, version=state.version)
        return True

    async def _notify(self, state: ContainerState) -> None:
        if self.on_probe is None:
            return
        result = self.on_probe(state)
        if result is not None:
            await result

    async def _watch(self, state: ContainerState) -> None:
        while True:
            state.wakeup.clear()  # before probing: a failure reported meanwhile wakes the next round
            if state.state == DOWN:
                await self._until_up(state)
            else:
                await self.probe(state)
            if state.state == UP:
                try:
                    await self._notify(state)
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
            retry=retry_if_result(lambda up: not up),
        )
        await retrying(self.probe, state)

    async def probe_all(self) -> None:
        await asyncio.gather(*(self.probe(s) for s in self.fleet.containers.values()))

    def start(self) -> None:
        for state in self.fleet.containers.values():
            self._tasks.append(asyncio.create_task(self._watch(state), name=f"health:{state.name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    @property
    def running(self) -> bool:
        return any(not t.done() for t in self._tasks)
