"""One client object per container: everything that talks to it.

The request path forwards through `pool` (the lean keep-alive client in
`router.upstream.http1`); health probes, keep-warm pings and the merged
listings use `session` (aiohttp, where a few microseconds do not matter).
Both are opened with the container and closed when it leaves the fleet.
"""

from __future__ import annotations

import contextlib

import aiohttp

from router.upstream.http1 import UpstreamPool


class ContainerClient:
    __slots__ = ("connect_timeout", "pool", "session", "url")

    def __init__(self, url: str, *, connect_timeout: float) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        # made in the event loop that serves them (both bind to the running loop)
        self.session: aiohttp.ClientSession | None = None
        self.pool: UpstreamPool | None = None

    def open(self) -> None:
        if self.session is None:
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60, enable_cleanup_closed=True)
            self.session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
        if self.pool is None:
            self.pool = UpstreamPool(self.url, connect_timeout=self.connect_timeout)

    def http(self) -> aiohttp.ClientSession:
        """The session for the background tasks (opened on first use)."""
        if self.session is None:
            self.open()
        assert self.session is not None
        return self.session

    def upstream(self) -> UpstreamPool:
        """The hot path's pool (opened on first use)."""
        pool = self.pool
        if pool is None:
            self.open()
            pool = self.pool
            assert pool is not None
        return pool

    async def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        if self.session is not None:
            with contextlib.suppress(Exception):
                await self.session.close()
            self.session = None
