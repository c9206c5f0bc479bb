"""The Host-header check upstream applies on a loopback bind (docs/ollama-wire.md §8.1)."""

from __future__ import annotations

import ipaddress
import socket


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


class HostCheck:
    """Decides (and caches) whether a Host header may reach a loopback-bound server."""

    def __init__(self) -> None:
        self._cache: dict[str, bool] = {}
        self._hostname = socket.gethostname().lower()

    def allowed(self, header: str) -> bool:
        verdict = self._cache.get(header)
        if verdict is None:
            verdict = self._decide(_strip_port(header.strip()).lower())
            if len(self._cache) < 1024:
                self._cache[header] = verdict
        return verdict

    @staticmethod
    def is_hostname(header: str) -> bool:
        """A name rather than an IP address (upstream answers OPTIONS for those at once)."""
        try:
            ipaddress.ip_address(_strip_port(header.strip()))
        except ValueError:
            return True
        return False

    def _decide(self, host: str) -> bool:
        if host in ("", "localhost", self._hostname):
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host.endswith((".localhost", ".local", ".internal"))
        # Addresses assigned to local interfaces are treated like private ones here.
        return address.is_loopback or address.is_private or address.is_unspecified
