"""Keep every catalog model loaded on every one of its containers.

- preload: at start, an empty-prompt generate (or empty embed) per model and
  container, with the catalog's keep_alive; `/readyz` waits for this round.
  A container a reload adds is preloaded the same way before it takes traffic.
- after each good probe: re-ping a model whose `expires_at` comes within the
  margin, and reload one that went missing from `/api/ps`.

The pings are the router's own requests, never a client's, so a client that
leaves cannot abort a load (docs/ollama-wire.md §1.5). A ping is bounded by
what a load takes on that container (a few times the slowest load seen
there; `load_timeout` before any was seen): a ping stuck on a hung container
gives up and is sent again after a later probe, instead of blocking every
later ping of that model.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
import structlog

from router.catalog import Catalog, Model
from router.events import EventHub
from router.fleet.fleet import Fleet
from router.fleet.state import ContainerState, LoadedModel, Phase

log = structlog.get_logger("router.keepwarm")

LOAD_BOUND_FACTOR = 4.0  # a ping may take this many times the slowest load seen on the container
LOAD_BOUND_FLOOR = 5.0  # seconds: never less, however fast loads were


def ping_request(model: Model) -> tuple[str, bytes]:
    """Path and body that load `model` and set its keep-alive, without generating."""
    if model.is_embedding:
        return "/api/embed", orjson.dumps({"model": model.tag, "input": [], "keep_alive": model.keep_alive})
    return "/api/generate", orjson.dumps({"model": model.tag, "keep_alive": model.keep_alive})


def deep_check_request(model: Model) -> tuple[str, bytes]:
    """A one-token generation (or one embedding) that proves the model answers."""
    if model.is_embedding:
        return "/api/embed", orjson.dumps({"model": model.tag, "input": "ping"})
    body = {"model": model.tag, "prompt": "ping", "stream": False, "options": {"num_predict": 1}}
    return "/api/generate", orjson.dumps(body)


class KeepWarm:
    def __init__(self, fleet: Fleet, events: EventHub, *, margin: float, load_timeout: float = 300.0, enabled: bool = True) -> None:
        self.fleet = fleet
        self.events = events
        self.margin = margin
        self.load_timeout = load_timeout
        self.enabled = enabled
        self._pending: dict[tuple[ContainerState, str], asyncio.Task[bool]] = {}
        self.pings = 0

    def configure(self, *, margin: float, load_timeout: float, enabled: bool) -> None:
        self.margin, self.load_timeout, self.enabled = margin, load_timeout, enabled

    def ping_timeout(self, state: ContainerState) -> float:
        if not state.load_seconds:
            return self.load_timeout
        return min(self.load_timeout, max(LOAD_BOUND_FLOOR, LOAD_BOUND_FACTOR * max(state.load_seconds)))

    async def ping(self, state: ContainerState, model: Model) -> bool:
        """Load `model` on `state`'s container (or refresh its keep-alive)."""
        path, body = ping_request(model)
        self.pings += 1
        was_loaded = state.has_loaded(model)
        timeout = self.ping_timeout(state)
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                async with state.client.http().post(f"{state.url}{path}", data=body, headers={"Content-Type": "application/json"}) as response:
                    text = await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"HTTP {response.status}: {text[:200].decode(errors='replace')}")
        except TimeoutError:
            return self._failed(state, model, f"no answer within {timeout:g}s (a load there takes up to {max(state.load_seconds, default=0):.3g}s)")
        except (aiohttp.ClientError, OSError, RuntimeError) as exc:
            return self._failed(state, model, f"{type(exc).__name__}: {exc}")
        seconds = time.monotonic() - started
        self.fleet.preload_errors.pop(f"{state.name}/{model.tag}", None)
        expires_at = None if model.keeps_forever else time.time() + model.keep_alive_seconds
        self.fleet.model_loaded(
            state, LoadedModel(name=model.tag, key=model.key, expires_at=expires_at), load_seconds=None if was_loaded else seconds
        )
        log.info("keepwarm_loaded", container=state.name, model=model.tag, seconds=round(seconds, 3))
        return True

    def _failed(self, state: ContainerState, model: Model, reason: str) -> bool:
        self.fleet.preload_errors[f"{state.name}/{model.tag}"] = reason
        log.warning("keepwarm_failed", container=state.name, model=model.tag, reason=reason)
        self.events.publish("keepwarm_failed", container=state.name, model=model.tag, reason=reason)
        return False

    def ping_in_background(self, state: ContainerState, model: Model) -> asyncio.Task[bool]:
        """At most one ping per (container, model) at a time."""
        key = (state, model.key)
        task = self._pending.get(key)
        if task is None or task.done():
            task = asyncio.create_task(self.ping(state, model), name=f"keepwarm:{state.name}:{model.tag}")
            self._pending[key] = task
        return task

    async def preload(self, states: list[ContainerState] | None = None, catalog: Catalog | None = None) -> None:
        """Every model on every container (or on `states`), concurrently; the models
        `catalog` places there (default: the fleet's, a reload's new one before it is applied)."""
        targets = states if states is not None else list(self.fleet.containers.values())
        models_on = (catalog or self.fleet.catalog).models_on
        tasks = [
            self.ping_in_background(state, model)
            for state in targets
            if state.phase is not Phase.DOWN
            for model in models_on(state.name)
        ]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        log.info("preload_done", pings=len(tasks), errors=len(self.fleet.preload_errors))

    async def after_probe(self, state: ContainerState) -> None:
        """Called by the health monitor after each good probe of `state`."""
        if state.phase is Phase.WARMING:
            await self.preload([state])
            self.fleet.warmed(state)
            return
        if not self.enabled or (not state.routable and state.phase is not Phase.EJECTED):
            return
        now = time.time()
        for model in self.fleet.catalog.models_on(state.name):
            loaded = state.loaded.get(model.key)
            if loaded is None:
                reason = "missing"
            elif model.keeps_forever:
                continue
            elif loaded.expires_at is not None and loaded.expires_at - now < self.margin:
                reason = "expiring"
            else:
                continue
            pending = self._pending.get((state, model.key))
            if pending is None or pending.done():
                log.info("keepwarm_ping", container=state.name, model=model.tag, reason=reason)
                if reason == "missing":
                    self.events.publish("keepwarm_reload", container=state.name, model=model.tag)
            self.ping_in_background(state, model)

    async def deep_check(self, timeout: float) -> None:
        """One tiny generation per model and container that is up with it loaded, or out
        after an ejection, all at once. A failure (an error, or no answer within
        `timeout`) ejects the container whatever its probes say; a pass brings an
        ejected one back."""
        pairs = [
            (state, model)
            for model in self.fleet.catalog.models.values()
            for state in self.fleet.states_for(model)
            if (state.phase is Phase.UP and state.has_loaded(model)) or state.phase in (Phase.EJECTED, Phase.PROBATION)
        ]
        reasons = await asyncio.gather(
            # a model not loaded loads first (a failed container may have lost it): allow for that
            *(self._deep_check_one(s, m, timeout if s.has_loaded(m) else timeout + self.ping_timeout(s)) for s, m in pairs)
        )
        failed: dict[ContainerState, str] = {}
        for (state, _), reason in zip(pairs, reasons, strict=True):
            if reason is not None:
                failed.setdefault(state, reason)
        for state in {s for s, _ in pairs}:
            reason = failed.get(state)
            if reason is not None:
                self.fleet.deep_check_failed(state, reason)
            else:
                self.fleet.deep_check_passed(state)

    async def _deep_check_one(self, state: ContainerState, model: Model, timeout: float) -> str | None:
        """None when `model` answered on `state`'s container, else why not."""
        path, body = deep_check_request(model)
        try:
            async with asyncio.timeout(timeout):
                async with state.client.http().post(f"{state.url}{path}", data=body, headers={"Content-Type": "application/json"}) as response:
                    await response.read()
                    if response.status >= 500:
                        raise RuntimeError(f"HTTP {response.status}")
        except (aiohttp.ClientError, OSError, TimeoutError, RuntimeError) as exc:
            log.warning("deep_check_failed", container=state.name, model=model.tag, reason=repr(exc))
            return f"deep check of {model.tag}: {type(exc).__name__} {exc}".rstrip()
        return None

    def forget(self, state: ContainerState) -> None:
        """A container that left the fleet: its pending pings end."""
        for key in [k for k in self._pending if k[0] is state]:
            self._pending.pop(key).cancel()

    async def stop(self) -> None:
        tasks = [t for t in self._pending.values() if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
