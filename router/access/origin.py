"""Browsers and DNS rebinding: the checks Ollama makes on its own bind, made here.

The router's requests to its containers carry a fixed Host and no Origin, so
the containers' own checks never see a browser. Without this, any web page in
a user's browser could POST `text/plain` JSON to `localhost:8080/api/chat`
(no preflight is needed for that), or reach the router through a rebound DNS
name. So, for every request, with or without API keys:

- an `Origin` that is not the router's own (`http(s)://Host`) must be allowed:
  the built-in local origins plus `allowed_origins` (like `OLLAMA_ORIGINS`);
  others get 403 in the API's shape;
- on a loopback bind, the `Host` must name this machine (loopback or private
  addresses, `localhost`, `*.localhost`, `*.local`, `*.internal`, the host
  name); others get 403;
- a CORS preflight (`OPTIONS` with `Origin` and
  `Access-Control-Request-Method`) from an allowed origin is answered 204
  here, before any key is asked for (browsers send preflights without
  credentials), and allowed cross-origin answers carry
  `Access-Control-Allow-Origin`.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler

from router.http.errors import OriginNotAllowed
from router.origins import ALLOW_METHODS, MAX_AGE, OLLAMA_ALLOW_HEADERS, HostRule, OriginRules

# Ollama's list, plus what the router's own clients send: API keys the Anthropic way,
# Anthropic's version headers, OpenAI's organisation headers, a request id.
ALLOW_HEADERS = ",".join((
    *OLLAMA_ALLOW_HEADERS, "X-Api-Key", "Anthropic-Version", "Anthropic-Beta",
    "Anthropic-Dangerous-Direct-Browser-Access", "OpenAI-Organization", "OpenAI-Project", "X-Request-Id",
))
EXPOSE_HEADERS = "X-Request-Id,X-Router-Container,X-Router-Model,X-Router-Fallback,Retry-After"
ALLOW_ORIGIN: web.RequestKey[str] = web.RequestKey("allow_origin", str)


class OriginPolicy:
    def __init__(self, allowed_origins: Iterable[str], *, check_host: bool) -> None:
        self.origins = OriginRules(allowed_origins)
        self.hosts = HostRule() if check_host else None

    async def gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Refuse a foreign Host or Origin, answer a preflight, else go on to `handler`."""
        headers = request.headers
        host = headers.get("Host", "")
        if self.hosts is not None and not self.hosts.allowed(host):
            raise OriginNotAllowed(f"Host '{host[:100]}' does not name this machine (the router is bound to loopback)")
        origin = headers.get("Origin")
        if origin is None or OriginRules.same_origin(origin, host):
            return await handler(request)
        origins = self.origins
        if not origins.allowed(origin):
            raise OriginNotAllowed(f"origin '{origin[:100]}' is not allowed (router setting allowed_origins)")
        allow_origin = "*" if origins.allow_all else origin
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in headers:
            response = web.Response(status=204)
            response.headers.update({
                "Access-Control-Allow-Origin": allow_origin,
                "Access-Control-Allow-Methods": ALLOW_METHODS,
                "Access-Control-Allow-Headers": ALLOW_HEADERS,
                "Access-Control-Max-Age": MAX_AGE,
            })
            response.headers.add("Vary", "Origin")
            response.headers.add("Vary", "Access-Control-Request-Method")
            response.headers.add("Vary", "Access-Control-Request-Headers")
            return response
        request[ALLOW_ORIGIN] = allow_origin  # on_prepare adds it, errors and streams included
        return await handler(request)

    @staticmethod
    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        """aiohttp's on_response_prepare: an allowed cross-origin answer says so, whoever made it."""
        allow_origin = request.get(ALLOW_ORIGIN)
        if allow_origin is not None:
            response.headers["Access-Control-Allow-Origin"] = allow_origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
            response.headers.add("Vary", "Origin")
