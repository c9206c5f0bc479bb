"""CORS as Ollama configures gin-contrib/cors (docs/ollama-wire.md §8.2)."""

from __future__ import annotations

from aiohttp import web

from router.origins import ALLOW_METHODS, MAX_AGE, OLLAMA_ALLOW_HEADERS, OriginRules

ALLOW_HEADERS = ",".join(OLLAMA_ALLOW_HEADERS)


class Cors(OriginRules):
    @staticmethod
    def is_cors(request: web.Request, origin: str) -> bool:
        """Same-origin requests (Origin == http(s)://Host) are not CORS."""
        return not OriginRules.same_origin(origin, request.headers.get("Host", ""))

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
