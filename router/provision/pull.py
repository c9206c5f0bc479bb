"""Pull the models each container needs and lacks, over Ollama's own API.

Used by `up` (with rich progress bars) and by `serve` at start (logging
progress): `pull_missing(catalog, ...)` works on any catalog container, managed
or remote, reached at its catalog URL.

Different models are pulled in parallel (bounded). One model is pulled on its
containers one after another: containers usually share the model volume, and
the second then finds the model there instead of writing the same blobs twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import aiohttp
import orjson
import structlog

from router.catalog.model import Catalog, Container
from router.catalog.names import model_key

log = structlog.get_logger("router.provision.pull")


@dataclass(slots=True)
class PullEvent:
    """Progress of one model on one container; `completed`/`total` sum all its layers."""

    container: str
    model: str
    status: str
    completed: int = 0
    total: int = 0
    done: bool = False
    error: str | None = None


@dataclass(slots=True)
class PullResult:
    container: str
    model: str
    ok: bool
    pulled: bool = False  # False: it was there already
    error: str = ""


ProgressCallback = Callable[[PullEvent], None]

_LIST_TIMEOUT = aiohttp.ClientTimeout(total=10, sock_connect=5)
# No total limit (a 40 GB model takes a while); a stream silent this long has stalled.
_PULL_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300)


class LogProgress:
    """A progress callback for logs: start, every quarter, end; never more often than `every` seconds."""

    def __init__(self, every: float = 5.0) -> None:
        self._every = every
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def __call__(self, event: PullEvent) -> None:
        key = (event.container, event.model)
        if event.error:
            log.error("pull failed", container=event.container, model=event.model, error=event.error)
            return
        if event.done:
            log.info("pull done", container=event.container, model=event.model)
            return
        quarter = int(4 * event.completed / event.total) if event.total else 0
        now = time.monotonic()
        previous = self._last.get(key)
        if previous is None or (quarter > previous[1] and now - previous[0] >= self._every):
            self._last[key] = (now, quarter)
            log.info("pulling", container=event.container, model=event.model, status=event.status,
                     completed=event.completed, total=event.total)


async def installed_models(session: aiohttp.ClientSession, url: str) -> set[str]:
    """Keys of the models a server has (`/api/tags`)."""
    async with session.get(f"{url}/api/tags", timeout=_LIST_TIMEOUT) as response:
        response.raise_for_status()
        body = await response.json(content_type=None)
    names = (m.get("name") or m.get("model") or "" for m in body.get("models") or [])
    return {k for k in (model_key(n) for n in names) if k}


async def pull_model(
    session: aiohttp.ClientSession, url: str, container: str, tag: str, on_progress: ProgressCallback
) -> PullResult:
    """`POST /api/pull`, streamed; layer progress summed into one event per line."""
    layers: dict[str, tuple[int, int]] = {}
    status = "starting"

    def emit(**extra: object) -> None:
        completed = sum(c for c, _ in layers.values())
        total = sum(t for _, t in layers.values())
        on_progress(PullEvent(container, tag, status, completed, total, **extra))  # type: ignore[arg-type]

    try:
        async with session.post(f"{url}/api/pull", json={"model": tag, "stream": True}, timeout=_PULL_TIMEOUT) as response:
            if response.status != 200:
                raise _PullFailed(await _error_text(response))
            async for raw in response.content:
                line = raw.strip()
                if not line:
                    continue
                message = orjson.loads(line)
                if message.get("error"):
                    raise _PullFailed(str(message["error"]))
                status = str(message.get("status", status))
                if message.get("digest") and message.get("total"):
                    layers[message["digest"]] = (int(message.get("completed", 0)), int(message["total"]))
                emit()
                if status == "success":
                    emit(done=True)
                    return PullResult(container, tag, ok=True, pulled=True)
        raise _PullFailed("the pull stream ended before success")
    except _PullFailed as exc:
        error = str(exc)
    except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError, OSError) as exc:
        error = _describe(exc)
    emit(error=error)
    return PullResult(container, tag, ok=False, error=error)


class _PullFailed(Exception):
    pass


async def _error_text(response: aiohttp.ClientResponse) -> str:
    text = await response.text()
    try:
        return f"HTTP {response.status}: {orjson.loads(text)['error']}"
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"HTTP {response.status}: {text[:200]}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


@dataclass(slots=True)
class _Work:
    tag: str
    containers: list[Container] = field(default_factory=list)


async def pull_missing(
    catalog: Catalog,
    *,
    containers: Iterable[str] | None = None,
    session: aiohttp.ClientSession | None = None,
    on_progress: ProgressCallback | None = None,
    parallel: int = 3,
) -> list[PullResult]:
    """Pull what the given containers (default: all of the catalog's) need and lack.

    Never raises for a server's failure: an unreachable container or a failed pull
    is a result with ok=False. Models already present give no result.
    """
    names = list(containers) if containers is not None else list(catalog.containers)
    progress = on_progress or LogProgress()
    own_session = session is None
    session = session or aiohttp.ClientSession()
    try:
        return await _pull_all(session, catalog, names, progress, max(1, parallel))
    finally:
        if own_session:
            await session.close()


async def _pull_all(
    session: aiohttp.ClientSession, catalog: Catalog, names: list[str], progress: ProgressCallback, parallel: int
) -> list[PullResult]:
    results: list[PullResult] = []
    installed: dict[str, set[str]] = {}

    async def survey(container: Container) -> None:
        try:
            installed[container.name] = await installed_models(session, container.url)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            error = f"cannot list models at {container.url}: {_describe(exc)}"
            results.append(PullResult(container.name, "*", ok=False, error=error))

    chosen = [catalog.containers[n] for n in names if n in catalog.containers]
    await asyncio.gather(*(survey(c) for c in chosen))

    work: dict[str, _Work] = {}
    for container in chosen:
        if container.name not in installed:
            continue
        for model in catalog.models_on(container.name):
            if model.key not in installed[container.name]:
                work.setdefault(model.key, _Work(model.tag)).containers.append(container)

    limit = asyncio.Semaphore(parallel)

    async def pull_everywhere(item: _Work) -> None:
        async with limit:
            for index, container in enumerate(item.containers):
                # After the first pull a shared volume may already hold it.
                if index and model_key(item.tag) in await _installed_or_empty(session, container.url):
                    continue
                results.append(await pull_model(session, container.url, container.name, item.tag, progress))

    await asyncio.gather(*(pull_everywhere(item) for item in work.values()))
    return results


async def _installed_or_empty(session: aiohttp.ClientSession, url: str) -> set[str]:
    try:
        return await installed_models(session, url)
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
        return set()


async def pull_at_start(catalog: Catalog, *, parallel: int = 3) -> list[PullResult]:
    """For `serve` (a Compose stack has nobody to run `up`): pull what any container
    lacks, logging progress and a summary; failures are logged, never raised, so the
    router still serves what it can."""
    log.info("checking for models to pull", containers=len(catalog.containers))
    results = await pull_missing(catalog, parallel=parallel)
    failed = [r for r in results if not r.ok]
    for result in failed:
        log.error("model not pulled", container=result.container, model=result.model, error=result.error)
    log.info("pulls finished", pulled=sum(1 for r in results if r.ok), failed=len(failed))
    return results


async def pull_before_preload(catalog: Catalog) -> None:
    """`serve`'s start hook: `create_app(catalog, settings, before_preload=[pull_before_preload])`
    when settings.pull_missing; /readyz stays not-ready until it and the preload are done."""
    await pull_at_start(catalog)
