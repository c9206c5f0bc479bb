"""Cloud model names and the cloud switch (docs/ollama-wire-2026.md §6).

Ollama sends a model named `x:cloud` or `x:tag-cloud` to ollama.com
instead of looking it up. The emulator has no network, so it answers such
a request the way an Ollama without network does: 403 when cloud is
disabled, else 502 with the dial error; in the native `{"error"}` shape on
every route (the passthrough runs before any compatibility layer), and
counted in `/_emulator/stats` as `cloud_requests`. `/api/status` reports
the switch.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from router.catalog.names import InvalidModelName, parse_model_name
from router.emulator.config import EmulatorConfig
from router.emulator.responses import native_json
from router.emulator.state import Emulator
from router.emulator.versions import CLOUD_NAMES_SINCE, NO_CLOUD_SINCE, at_least

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DISABLED_PREFIX = "ollama cloud is disabled"
INFERENCE_UNAVAILABLE = "remote model is unavailable"
DETAILS_UNAVAILABLE = "remote model details are unavailable"
WEB_SEARCH_UNAVAILABLE = "web search is unavailable"
CLOUD_BASE_URL = "https://ollama.com:443"
DIAL_ERROR = "dial tcp: lookup ollama.com: no such host"
_MAY_NAME_CLOUD = re.compile(rb"[cC][lL][oO][uU][dD]")


class ConflictingSource(ValueError):
    """`x:cloud:local` and the like (§6.1)."""


def _source_suffix(raw: str) -> tuple[str, str]:
    """(base, "cloud" | "local" | "") from the text after the last colon."""
    index = raw.rfind(":")
    if index < 0:
        return raw, ""
    suffix_raw = raw[index + 1 :].strip()
    suffix = suffix_raw.lower()
    if suffix in ("cloud", "local"):
        return raw[:index], suffix
    if "/" not in suffix_raw and suffix.endswith("-cloud"):
        return raw[: index + 1] + suffix_raw[: -len("-cloud")], "cloud"
    return raw, ""


def parse_source(raw: str) -> tuple[str, str]:
    """(base name, source) of a request's model string; raises ConflictingSource."""
    raw = raw.strip()
    base, source = _source_suffix(raw)
    if source and _source_suffix(base)[1]:
        raise ConflictingSource(f'use either :local or :cloud, not both: "{raw}"')
    return base, source


def cloud_base(raw: str) -> str | None:
    """The ollama.com name a cloud model string stands for; None when it is not one."""
    try:
        base, source = parse_source(raw)
        if source != "cloud":
            return None
        parse_model_name(base)
    except (ConflictingSource, InvalidModelName):
        return None  # Ollama lets the local path report these
    return base


def cloud_source(config: EmulatorConfig) -> str:
    """What disabled cloud: `none`, `env` (OLLAMA_NO_CLOUD), `config` (server.json), `both`."""
    if not at_least(config, NO_CLOUD_SINCE):
        return "none"
    return {(False, False): "none", (True, False): "env", (False, True): "config", (True, True): "both"}[
        (config.no_cloud_env, config.no_cloud)
    ]


def cloud_disabled(config: EmulatorConfig) -> bool:
    return cloud_source(config) != "none"


class Cloud:
    """The cloud side of one emulated server: refusals and /api/status."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.config = emulator.config
        self.enabled = at_least(self.config, CLOUD_NAMES_SINCE)

    def refusal(self, method: str, path: str, operation: str) -> tuple[int, str]:
        """(status, message) of a cloud request this server cannot serve."""
        self.emulator.stats.cloud_requests += 1
        if cloud_disabled(self.config):
            return 403, f"{DISABLED_PREFIX}: {operation}"
        url = f"{CLOUD_BASE_URL}{path}?ts={int(time.time())}"
        return 502, f'{method.capitalize()} "{url}": {DIAL_ERROR}'

    def refuse(self, request: web.Request, operation: str = INFERENCE_UNAVAILABLE, path: str = "") -> web.Response:
        status, message = self.refusal(request.method, path or request.path, operation)
        return native_json({"error": message}, status)

    def passthrough(self, handler: Handler, operation: str = INFERENCE_UNAVAILABLE) -> Handler:
        """Wrap a JSON model endpoint: a body naming a cloud model never reaches it (§6.2)."""
        if not self.enabled:
            return handler

        @functools.wraps(handler)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            body = await _json_object(request)
            if body is not None and _names_cloud(body) and not _keeps_local_path(request.path, body):
                return self.refuse(request, operation)
            return await handler(request)

        return wrapper

    def path_passthrough(self, handler: Handler) -> Handler:
        """Wrap GET /v1/models/{model}: a cloud name in the path is refused (§6.2)."""
        if not self.enabled:
            return handler

        @functools.wraps(handler)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            base = cloud_base(request.match_info.get("model", ""))
            if base is not None:
                return self.refuse(request, DETAILS_UNAVAILABLE, f"/v1/models/{base}")
            return await handler(request)

        return wrapper

    async def status(self, request: web.Request) -> web.Response:
        """GET /api/status (§6.3)."""
        source = cloud_source(self.config)
        return native_json({"cloud": {"disabled": source != "none", "source": source}})


async def _json_object(request: web.Request) -> dict[str, Any] | None:
    """The body as an object, when it could name a cloud model at all."""
    raw = await request.read()  # aiohttp keeps it: the handler reads the same bytes
    if not _MAY_NAME_CLOUD.search(raw):
        return None  # the hot path: no second parse of an ordinary request
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def _names_cloud(body: dict[str, Any]) -> bool:
    model = body.get("model")
    if not model and "name" in body:  # /api/show still takes the older `name`
        model = body.get("name")
    return isinstance(model, str) and cloud_base(model) is not None


def _keeps_local_path(path: str, body: dict[str, Any]) -> bool:
    """Server-side web search keeps /v1/responses and /v1/messages on the
    compatibility layer even for cloud models (§6.2); the handler decides."""
    tools = body.get("tools")
    if not isinstance(tools, list):
        return False
    kinds = [tool.get("type") for tool in tools if isinstance(tool, dict)]
    if path == "/v1/responses":
        return "web_search" in kinds
    if path == "/v1/messages":
        return any(isinstance(kind, str) and kind.strip().startswith("web_search") for kind in kinds)
    return False
