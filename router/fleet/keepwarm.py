"""Keep every catalog model loaded on every one of its containers.

- preload: at start, an empty-prompt generate (or empty embed) per model and
  container, with the catalog's keep_alive; `/readyz` waits for this round.
- after each good probe: re-ping a model whose `expires_at` comes within the
  margin, and reload one that went missing from `/api/ps`.
The pings are the router's own requests, never a client's, so a client that
leaves cannot abort a load (docs/ollama-wire.md §1.5).
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
import structlog

from router.catalog import Model
from router.fleet.state import UP, ContainerState, Fleet, LoadedModel

log = structlog.get_logger("router.keepwarm")


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
    def __init__(self, fleet: Fleet, *, margin: float, load_timeout: float = 600.0) -> None:
        self.fleet = fleet
        self.margin = margin
        self.load_timeout = load_timeout
        self._pending: dict[tuple[str, str], asyncio.Task[bool]] = {}
        self.pings = 0

    async def ping(self, state: ContainerState, model: Model) -> bool:
        """Load `model` on `state`'s container (or refresh its keep-alive)."""
        assert state.session is not None
        path, body = ping_request(model)
        self.pings += 1
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.load_timeout):
                async with state.session.post(f"{state.url}{path}", data=body, headers={"Content-Type": "application/json"}) as response:
                    text = await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"HTTP {response.status}: {text[:200].decode(errors='replace')}")
        except (aiohttp.ClientError, OSError, TimeoutError, RuntimeError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            self.fleet.preload_errors[f"{state.name}/{model.tag}"] = reason
            log.warning("keepwarm_failed", container=state.name, model=model.tag, reason=reason)
            return False
        self.fleet.preload_errors.pop(f"{state.name}/{model.tag}", None)
        # Known loaded now, not only from the next /api/ps: the balancer prefers it at once.
        expires_at = None if model.keeps_forever else time.time() + model.keep_alive_seconds
        state.loaded[model.key] = LoadedModel(name=model.tag, key=model.key, expires_at=expires_at)
        log.info("keepwarm_loaded", container=state.name, model=model.tag, seconds=round(time.monotonic() - started, 3))
        return True

    def ping_in_background(self, state: ContainerState, model: Model) -> asyncio.Task[bool]:
        """At most one ping per (container, model) at a time."""
        key = (state.name, model.key)
        task = self._pending.get(key)
        if task is None or task.done():
            task = asyncio.create_task(self.ping(state, model), name=f"keepwarm:{state.name}:{model.tag}")
            self._pending[key] = task
        return task

    async def preload(self) -> None:
        """The start-up round: every model on every container, concurrently."""
        tasks = [
            self.ping_in_background(state, model)
            for model in self.fleet.catalog.models.values()
            for state in self.fleet.states_for(model)
            if state.state != "down"
        ]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.fleet.ready = True
        log.info("preload_done", pings=len(tasks), errors=len(self.fleet.preload_errors))

    def after_probe(self, state: ContainerState) -> None:
        """Called by the health monitor after each good probe of `state`."""
        if state.state != UP:
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
            if (state.name, model.key) not in self._pending or self._pending[(state.name, model.key)].done():
                log.info("keepwarm_ping", container=state.name, model=model.tag, reason=reason)
            self.ping_in_background(state, model)

    async def deep_check(self, timeout: float) -> None:
        """One tiny generation per loaded model and container, all at once.

        A failure (error, or no answer within `timeout`) takes the container
        out and keeps it out (`generation_failed`), whatever its probes say,
        until a later deep check of all its models passes.
        """
        pairs = [
            (state, model)
            for model in self.fleet.catalog.models.values()
            for state in self.fleet.states_for(model)
            if state.session is not None
            and ((state.state == UP and state.has_loaded(model)) or state.generation_failed is not None)
        ]
        reasons = await asyncio.gather(
            # a model not loaded loads first (a failed container may have lost it): allow for that
            *(self._deep_check_one(s, m, timeout if s.has_loaded(m) else timeout + self.load_timeout) for s, m in pairs)
        )
        failed: dict[str, str] = {}
        for (state, _), reason in zip(pairs, reasons, strict=False):
            if reason is not None:
                failed.setdefault(state.name, reason)
        for state in {s.name: s for s, _ in pairs}.values():
            reason = failed.get(state.name)
            if reason is not None:
                state.generation_failed = reason
                self.fleet.report_failure(state, reason, fatal=True)
            elif state.generation_failed is not None:
                log.info("deep_check_passed", container=state.name)
                state.generation_failed = None
                state.wakeup.set()  # probe now: it comes back up on a good probe

    async def _deep_check_one(self, state: ContainerState, model: Model, timeout: float) -> str | None:
        """None when `model` answered on `state`'s container, else why not."""
        assert state.session is not None
        path, body = deep_check_request(model)
        try:
            async with asyncio.timeout(timeout):
                async with state.session.post(f"{state.url}{path}", data=body, headers={"Content-Type": "application/json"}) as response:
                    await response.read()
                    if response.status >= 500:
                        raise RuntimeError(f"HTTP {response.status}")
        except (aiohttp.ClientError, OSError, TimeoutError, RuntimeError) as exc:
            log.warning("deep_check_failed", container=state.name, model=model.tag, reason=repr(exc))
            return f"deep check of {model.tag}: {type(exc).__name__} {exc}".rstrip()
        return None

    async def stop(self) -> None:
        tasks = [t for t in self._pending.values() if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
