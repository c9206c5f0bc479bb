"""Noticing that a file changed on disk, by polling its stat once a second.

Polling rather than inotify: it needs nothing installed, works on every file
system, and sees a Kubernetes ConfigMap or Secret update (an atomic swap of a
symlinked directory, which inotify watches on the file itself miss).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

log = structlog.get_logger("router.watch")

Stamp = tuple[int, int, int] | None


def stamp(path: str) -> Stamp:
    """What changes when the file does."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


async def watch_file(path: str, on_change: Callable[[], Awaitable[object]], *, every: float = 1.0) -> None:
    """Call `on_change` after `path` changed (and settled for one more poll), until cancelled."""
    seen = stamp(path)
    while True:
        await asyncio.sleep(every)
        now = stamp(path)
        if now == seen or now is None:
            continue
        await asyncio.sleep(every / 4)  # an editor may still be writing it
        settled = stamp(path)
        if settled != now:
            continue
        seen = settled
        try:
            await on_change()
        except Exception:  # a failed reload is reported by the reload itself; the watch goes on
            log.exception("watch_callback_failed", path=path)
