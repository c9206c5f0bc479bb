"""Load each container's models into memory, as the catalog's keep_alive asks.

Ollama loads a model for a request with no input (docs/ollama-wire.md §4.4, §6.1): an
empty `/api/generate` for generative models, an empty `/api/embed` for
embedding models (which refuse generate).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp

from router.catalog.model import Catalog, Container, Model

# Loading a large model from disk into several GPUs can take minutes.
_LOAD_TIMEOUT = aiohttp.ClientTimeout(total=900, sock_connect=10)


@dataclass(slots=True)
class PreloadResult:
    container: str
    model: str
    ok: bool
    error: str = ""


def load_request(model: Model) -> tuple[str, dict[str, object]]:
    """The path and body that load `model` without generating anything."""
    if model.is_embedding:
        return "/api/embed", {"model": model.tag, "input": [], "keep_alive": model.keep_alive}
    return "/api/generate", {"model": model.tag, "prompt": "", "keep_alive": model.keep_alive}


async def _load(session: aiohttp.ClientSession, container: Container, model: Model) -> PreloadResult:
    path, body = load_request(model)
    try:
        async with session.post(f"{container.url}{path}", json=body, timeout=_LOAD_TIMEOUT) as response:
            if response.status == 200:
                await response.read()
                return PreloadResult(container.name, model.tag, ok=True)
            text = (await response.text())[:300]
            return PreloadResult(container.name, model.tag, ok=False, error=f"HTTP {response.status}: {text}")
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        return PreloadResult(container.name, model.tag, ok=False, error=str(exc) or type(exc).__name__)


async def preload(
    catalog: Catalog, *, containers: Iterable[str] | None = None, session: aiohttp.ClientSession | None = None
) -> list[PreloadResult]:
    """Load every model of the given containers (default: all); containers in parallel,
    one model at a time within a container (Ollama loads one at a time anyway)."""
    names = list(containers) if containers is not None else list(catalog.containers)
    own_session = session is None
    session = session or aiohttp.ClientSession()

    async def load_all(container: Container) -> list[PreloadResult]:
        return [await _load(session, container, m) for m in catalog.models_on(container.name)]

    try:
        batches = await asyncio.gather(*(load_all(catalog.containers[n]) for n in names if n in catalog.containers))
    finally:
        if own_session:
            await session.close()
    return [result for batch in batches for result in batch]
