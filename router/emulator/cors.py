"""CORS as Ollama configures gin-contrib/cors (docs/ollama-wire.md §8.2)."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

BUILTIN_ORIGINS = (*tuple(f"{scheme}://{host}{port}" for host in ("localhost", "127.0.0.1", "0.0.0.0") for scheme in ("http", "https") for port in ("", ":*")), "app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*")
ALLOW_METHODS = "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"
ALLOW_HEADERS = ",".join((
    "Authorization", "Content-Type", "User-Agent", "Accept", "X-Requested-With", "Openai-Beta",
    "X-Stainless-Arch", "X-Stainless-Async", "X-Stainless-Custom-Poll-Interval", "X-Stainless-Helper-Method",
    "X-Stainless-Lang", "X-Stainless-Os", "X-Stainless-Package-Version", "X-Stainless-Poll-Helper",
    "X-Stainless-Retry-Count", "X-Stainless-Runtime", "X-Stainless-Runtime-Version", "X-Stainless-Timeout",
))
MAX_AGE = "43200"


class Cors:
    def __init__(self, extra_origins: Iterable[str] = ()) -> None:
        extra = [o.strip() for o in extra_origins if o.strip()]
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
        if self.allow_all or origin in self._exact:
            return True
        return any(
            origin.startswith(prefix) and origin.endswith(suffix) and len(origin) >= len(prefix) + len(suffix)
            for prefix, suffix in self._wild
        )

    @staticmethod
    def is_cors(request: web.Request, origin: str) -> bool:
        """Same-origin requests (Origin == http(s)://Host) are not CORS."""
        host = request.headers.get("Host", "")
        return origin not in (f"http://{host}", f"https://{host}")

    def gate(self, request: web.Request, origin: str) -> web.Response | None:
        """403 for a refused origin, 204 for a preflight, None to go on."""
        if not self.is_cors(request, origin):
            return None
        if not self.allowed(origin):
            return web.Response(status=403)
        if request.method == "OPTIONS":
            response = web.Response(status=204)
            headers = response.headers
            headers["Access-Control-Allow-Origin"] = "*" if self.allow_all else origin
            headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
            headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            headers["Access-Control-Max-Age"] = MAX_AGE
            if not self.allow_all:
                headers.add("Vary", "Origin")
            headers.add("Vary", "Access-Control-Request-Method")
            headers.add("Vary", "Access-Control-Request-Headers")
            return response
        return None

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        """aiohttp on_response_prepare: the headers of an allowed cross-origin request."""
        origin = request.headers.get("Origin")
        if not origin or request.method == "OPTIONS" or not self.is_cors(request, origin):
            return
        if response.status == 403 or not self.allowed(origin):
            return
        if self.allow_all:
            response.headers["Access-Control-Allow-Origin"] = "*"
        else:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers.add("Vary", "Origin")
