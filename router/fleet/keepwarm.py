"""Keep every catalog model loaded on every one of its containers.

- preload: at start, an empty-prompt generate (or empty embed) per model and
  container, with the catalog's keep_alive; `/readyz` waits for this round.
  A container a reload adds is preloaded the same way before it takes traffic.
- after each good probe: re-ping a model whose `expires_at` comes within the
  margin, and reload one that went missing from `/api/ps`.
- deep checks (a one-token generation per model): of every container each
  `deep_check_interval` when set, and always of a container on probation
  after an ejection, so that it comes back without a client's request
  having to find out whether it serves again.

Cloud models (names ending `:cloud`/`-cloud`) are left alone: Ollama passes
their requests to ollama.com and never loads them.

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
    """Path and body that load `model` and set its keep-alive, without generating;
    loaded with its pinned window and shift (`Model.load_options`), as requests for it are served."""
    pinned = model.load_options()
    if model.is_embedding:
        return "/api/embed", orjson.dumps({"model": model.tag, "input": [], "keep_alive": model.keep_alive, **pinned})
    return "/api/generate", orjson.dumps({"model": model.tag, "keep_alive": model.keep_alive, **pinned})


def deep_check_request(model: Model) -> tuple[str, bytes]:
    """A one-token generation (or one embedding) that proves the model answers (on the loaded runner)."""
    pinned = model.load_options()
    options = pinned.pop("options", {})
    if model.is_embedding:
        return "/api/embed", orjson.dumps({"model": model.tag, "input": "ping", **({"options": options} if options else {})})
    body = {"model": model.tag, "prompt": "ping", "stream": False, "options": {**options, "num_predict": 1}, **pinned}
    return "/api/generate", orjson.dumps(body)


class KeepWarm:
    def __init__(
        self, fleet: Fleet, events: EventHub, *, margin: float, load_timeout: float = 300.0, check_timeout: float = 60.0,
        enabled: bool = True,
    ) -> None:
        self.fleet = fleet
        self.events = events
        self.margin = margin
        self.load_timeout = load_timeout
        self.check_timeout = check_timeout  # a deep check's first token (the router's ttft_timeout)
        self.enabled = enabled
        self._pending: dict[tuple[ContainerState, str], asyncio.Task[bool]] = {}
        self._checks: dict[ContainerState, asyncio.Task[None]] = {}  # probation checks, one per container
        self.pings = 0

    def configure(self, *, margin: float, load_timeout: float, check_timeout: float, enabled: bool) -> None:
        self.margin, self.load_timeout, self.check_timeout, self.enabled = margin, load_timeout, check_timeout, enabled

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
            if not model.is_cloud
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
        if state.phase is Phase.PROBATION:
            self.check_in_background(state)
        if not self.enabled or (not state.routable and state.phase is not Phase.EJECTED):
            return
        now = time.time()
        for model in self.fleet.catalog.models_on(state.name):
            if model.is_cloud:
                continue
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

    async def deep_check(self) -> None:
        """One tiny generation per model and container that is up with it loaded, or out
        after an ejection, all at once. A failure (an error, or no first token within
        `check_timeout`) ejects the container whatever its probes say; a pass brings an
        ejected one back."""
        checks = {
            state: [
                m for m in self.fleet.catalog.models_on(state.name)
                if not m.is_cloud and (state.has_loaded(m) or state.phase is not Phase.UP)
            ]
            for state in self.fleet.containers.values()
            if state.phase in (Phase.UP, Phase.EJECTED, Phase.PROBATION)
        }
        checks = {state: models for state, models in checks.items() if models}
        reasons = await asyncio.gather(*(self._check(state, models) for state, models in checks.items()))
        for state, reason in zip(checks, reasons, strict=True):
            self._judge(state, reason)

    def check_in_background(self, state: ContainerState) -> None:
        """Deep-check a container on probation (one check at a time per container): it
        comes back when its models answer, and is ejected again when one does not."""
        task = self._checks.get(state)
        if task is None or task.done():
            self._checks[state] = asyncio.create_task(self._probation_check(state), name=f"probation-check:{state.name}")

    async def _probation_check(self, state: ContainerState) -> None:
        reason = await self._check(state, self.fleet.catalog.models_on(state.name))
        if state.phase is Phase.PROBATION:  # a request's outcome may have decided meanwhile
            self._judge(state, reason)

    async def _check(self, state: ContainerState, models: list[Model]) -> str | None:
        """None when every one of `models` answered on `state`'s container, else why not."""
        # a model not loaded loads first (a failed container may have lost it): allow for that
        reasons = await asyncio.gather(*(
            self._deep_check_one(state, m, self.check_timeout + (0.0 if state.has_loaded(m) else self.ping_timeout(state)))
            for m in models
        ))
        return next((r for r in reasons if r is not None), None)

    def _judge(self, state: ContainerState, reason: str | None) -> None:
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
        """A container that left the fleet: its pending pings and checks end."""
        for key in [k for k in self._pending if k[0] is state]:
            self._pending.pop(key).cancel()
        check = self._checks.pop(state, None)
        if check is not None:
            check.cancel()

    async def stop(self) -> None:
        tasks = [t for t in [*self._pending.values(), *self._checks.values()] if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
