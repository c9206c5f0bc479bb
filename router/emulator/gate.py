"""What every request passes before its handler: CORS (8.2), then the Host check (8.1)."""

from __future__ import annotations

from aiohttp import web

from router.emulator.cors import Cors
from router.emulator.hosts import HostCheck


class Gate:
    def __init__(self, cors: Cors, hosts: HostCheck | None) -> None:
        self.cors = cors
        self.hosts = hosts  # None unless bound to loopback

    def check(self, request: web.Request) -> web.Response | None:
        """A response that replaces the handler's (403, or 204 for OPTIONS), or None."""
        headers = request.headers
        origin = headers.get("Origin")
        if origin is not None:
            early = self.cors.gate(request, origin)
            if early is not None:
                return early
        hosts = self.hosts
        if hosts is not None:
            host = headers.get("Host", "")
            if not hosts.allowed(host):
                return web.Response(status=403)
            if request.method == "OPTIONS" and hosts.is_hostname(host):
                return web.Response(status=204)
        return None
