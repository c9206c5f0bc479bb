"""Timestamps in the exact forms Ollama writes them (docs/ollama-wire.md §1.6)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_utc_second = -1
_utc_prefix = ""


def created_at(ns: int | None = None) -> str:
    """RFC 3339 in UTC with nanoseconds, trailing zeros trimmed (`...11.48213Z`).

    Hot path: the `YYYY-MM-DDTHH:MM:SS` prefix is cached per second.
    """
    global _utc_second, _utc_prefix
    if ns is None:
        ns = time.time_ns()
    second, fraction = divmod(ns, 1_000_000_000)
    if second != _utc_second:
        _utc_prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _utc_second = second
    if fraction == 0:
        return _utc_prefix + "Z"
    return f"{_utc_prefix}.{fraction:09d}".rstrip("0") + "Z"


def local_time(seconds: float) -> str:
    """RFC 3339 in the server's local zone (`Z` when that is UTC), as Go prints time.Time.

    Used for `modified_at` and `expires_at` (also the far-future "forever" one).
    """
    moment = (_EPOCH + timedelta(seconds=seconds)).astimezone()
    base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    micros = moment.microsecond
    if micros:
        base += f".{micros:06d}".rstrip("0")
    offset = moment.utcoffset()
    if not offset:
        return base + "Z"
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{base}{sign}{minutes // 60:02d}:{minutes % 60:02d}"
