"""Wire-level constants and error bodies shared by the router and the emulator.

Pure helpers only: the emulator must stay a stand-alone Ollama, so nothing here
knows about the catalog or the fleet (docs/ollama-wire.md §1.3, §9.1, §9.3).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

JSON_UTF8 = "application/json; charset=utf-8"
JSON = "application/json"
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
TEXT_UTF8 = "text/plain; charset=utf-8"
TEXT = "text/plain"

OLLAMA_RUNNING = b"Ollama is running"
BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"


def dumps(value: object) -> bytes:
    return orjson.dumps(value)


def openai_error_type(status: int) -> str:
    """Ollama's mapping of a status to an OpenAI error `type` (9.3)."""
    if status == 400:
        return "invalid_request_error"
    if status == 404:
        return "not_found_error"
    return "api_error"


def native_error_body(message: str, **extra: object) -> bytes:
    """`{"error": "..."}` without a trailing newline."""
    return orjson.dumps({"error": message, **extra})


def openai_error_body(
    message: str,
    status: int,
    *,
    type_: str | None = None,
    param: str | None = None,
    code: str | None = None,
) -> bytes:
    """OpenAI's error envelope followed by a newline, as Ollama writes it."""
    body = {
        "error": {
            "message": message,
            "type": type_ or openai_error_type(status),
            "param": param,
            "code": code,
        }
    }
    return orjson.dumps(body) + b"\n"


def is_loopback(host: str) -> bool:
    """A bind address that only this machine can reach (`localhost`, 127.0.0.0/8, `[::1]`)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(slots=True)
class Listening:
    """An aiohttp application being served on `host:port` by `runner`."""

    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_site(
    app: web.Application,
    host: str | None,
    port: int,
    *,
    runner: dict[str, Any],
    site: dict[str, Any],
    runner_class: type[web.AppRunner] = web.AppRunner,
) -> tuple[web.AppRunner, web.TCPSite]:
    """Set up an AppRunner for `app` (with `runner` options) and start a TCP site
    on `host:port` (backlog 1024, plus `site` options)."""
    app_runner = runner_class(app, **runner)
    await app_runner.setup()
    tcp_site = web.TCPSite(app_runner, host, port, backlog=1024, **site)
    await tcp_site.start()
    return app_runner, tcp_site
