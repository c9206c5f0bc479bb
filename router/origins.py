"""Which browser origins and which Host headers an Ollama-style server accepts.

Pure rules shared by the router (`router.access.origin`) and the emulator:
Ollama applies them on its own bind (docs/ollama-wire.md §8) as its defence
against cross-site requests and DNS rebinding, and a router in front must
apply them itself, since its requests to the containers carry neither the
browser's Origin nor its Host.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

BUILTIN_ORIGINS = (
    *(f"{scheme}://{host}{port}" for host in ("localhost", "127.0.0.1", "0.0.0.0") for scheme in ("http", "https") for port in ("", ":*")),
    "app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*",
)
ALLOW_METHODS = "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"
OLLAMA_ALLOW_HEADERS = (
    "Authorization", "Content-Type", "User-Agent", "Accept", "X-Requested-With", "Openai-Beta",
    "X-Stainless-Arch", "X-Stainless-Async", "X-Stainless-Custom-Poll-Interval", "X-Stainless-Helper-Method",
    "X-Stainless-Lang", "X-Stainless-Os", "X-Stainless-Package-Version", "X-Stainless-Poll-Helper",
    "X-Stainless-Retry-Count", "X-Stainless-Runtime", "X-Stainless-Runtime-Version", "X-Stainless-Timeout",
)
MAX_AGE = "43200"


class OriginRules:
    """`OLLAMA_ORIGINS`-style patterns (one `*` wildcard each; `*` alone: any origin) plus the built-ins."""

    def __init__(self, extra_origins: Iterable[str] = ()) -> None:
        extra = [o.strip().lower() for o in extra_origins if o.strip()]
        self.allow_all = "*" in extra
        self._exact: set[str] = set()
        self._wild: list[tuple[str, str]] = []
        for pattern in (*extra, *BUILTIN_ORIGINS):
            if "*" in pattern:
                prefix, _, suffix = pattern.partition("*")
                self._wild.append((prefix, suffix))
            else:
                self._exact.add(pattern)

    def allowed(self, origin: str) -> bool:
        # the patterns are lower-cased, the request's Origin is compared as sent (as gin-contrib/cors does)
        if self.allow_all or origin in self._exact:
            return True
        return any(
            origin.startswith(prefix) and origin.endswith(suffix) and len(origin) >= len(prefix) + len(suffix)
            for prefix, suffix in self._wild
        )

    @staticmethod
    def same_origin(origin: str, host: str) -> bool:
        """Origin == http(s)://Host: not a cross-origin request at all."""
        return origin in (f"http://{host}", f"https://{host}")


def strip_port(host: str) -> str:
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


class HostRule:
    """Whether a Host header may reach a loopback-bound server (cached; at most 1024 entries)."""

    def __init__(self) -> None:
        self._cache: dict[str, bool] = {}
        self._hostname = socket.gethostname().lower()

    def allowed(self, header: str) -> bool:
        verdict = self._cache.get(header)
        if verdict is None:
            verdict = self._decide(strip_port(header.strip()).lower())
            if len(self._cache) < 1024:
                self._cache[header] = verdict
        return verdict

    @staticmethod
    def is_hostname(header: str) -> bool:
        """A name rather than an IP address."""
        try:
            ipaddress.ip_address(strip_port(header.strip()))
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
