"""What runs for a catalog: Docker's view of each container plus what its Ollama has loaded."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from router.catalog.model import Catalog
from router.catalog.names import InvalidModelName, display_name
from router.provision.spec import LABEL_GPUS

_PS_TIMEOUT = aiohttp.ClientTimeout(total=2, sock_connect=1)


@dataclass(slots=True)
class StatusRow:
    container: str
    state: str
    gpus: str
    image: str
    health: str
    loaded: list[str] | None  # None: could not ask
    uptime: str
    url: str = ""
    host: str = ""


def format_uptime(seconds: float) -> str:
    seconds = int(max(0, seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def _parse_time(text: str) -> datetime | None:
    """Docker's RFC 3339 times carry nanoseconds, which datetime does not take."""
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text or "")
    if not match:
        return None
    fraction = (match.group(2) or ".0")[:7]
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    try:
        return datetime.fromisoformat(f"{match.group(1)}{fraction}{zone}")
    except ValueError:
        return None


def docker_row(name: str, attrs: dict[str, Any], url: str, placed: str | None, host: str = "") -> StatusRow:
    """`placed`: where the catalog puts this container (None: nowhere); a row on another host is a leftover."""
    state = attrs.get("State", {})
    status = state.get("Status", "?")
    if status == "exited":
        status = f"exited ({state.get('ExitCode')})"
    if placed is None:
        status += " (not in catalog)"
    elif placed != host:
        status += f" (the catalog puts it on {placed})"
    health = (state.get("Health") or {}).get("Status", "-")
    uptime = "-"
    if state.get("Running"):
        started = _parse_time(state.get("StartedAt", ""))
        if started:
            uptime = format_uptime((datetime.now(UTC) - started).total_seconds())
    labels = attrs.get("Config", {}).get("Labels") or {}
    return StatusRow(
        container=name,
        state=status,
        gpus=labels.get(LABEL_GPUS) or "-",
        image=attrs.get("Config", {}).get("Image", "?"),
        health=health,
        loaded=None,
        uptime=uptime,
        url=url if state.get("Running") else "",
        host=host,
    )


Inspected = dict[str, dict[str, Any]]  # `docker inspect` of our containers on one engine, by catalog name


def status_rows(catalog: Catalog, by_host: dict[str, Inspected | None]) -> list[StatusRow]:
    """One row per catalog container (managed or remote), then our containers on each
    host that the catalog does not put there. `by_host[h]` None: host h did not answer."""
    rows: list[StatusRow] = []
    for container in catalog.containers.values():
        gpus = ",".join(map(str, container.gpus)) or "-"
        inspected = by_host.get(container.host)
        if not container.managed:
            rows.append(StatusRow(container.name, "remote", "-", "-", "-", None, "-", container.url))
        elif inspected is None:
            rows.append(StatusRow(container.name, "host unreachable", gpus, container.image, "-", None, "-", host=container.host))
        elif container.name in inspected:
            rows.append(docker_row(container.name, inspected[container.name], container.url, container.host, container.host))
        else:
            rows.append(StatusRow(container.name, "not created", gpus, container.image, "-", None, "-", host=container.host))
    for host, inspected in by_host.items():
        for name, attrs in sorted((inspected or {}).items()):
            placed = catalog.containers.get(name)
            if placed is None or not placed.managed or placed.host != host:
                rows.append(docker_row(name, attrs, "", placed.host if placed and placed.managed else None, host))
    return rows


async def _loaded(session: aiohttp.ClientSession, url: str) -> list[str] | None:
    try:
        async with session.get(f"{url}/api/ps", timeout=_PS_TIMEOUT) as response:
            if response.status != 200:
                return None
            body = await response.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
        return None
    return [_display(m.get("name") or m.get("model") or "?") for m in body.get("models") or []]


def _display(name: str) -> str:
    try:
        return display_name(name)
    except InvalidModelName:
        return name


async def fill_loaded(rows: list[StatusRow]) -> None:
    """Ask each reachable Ollama what it has loaded (short timeout: status must stay quick)."""
    async with aiohttp.ClientSession() as session:
        answers = await asyncio.gather(*(_loaded(session, r.url) if r.url else _none() for r in rows))
    for row, loaded in zip(rows, answers, strict=True):
        row.loaded = loaded
        if row.state == "remote":
            row.health = "answers" if loaded is not None else "unreachable"


async def _none() -> None:
    return None
