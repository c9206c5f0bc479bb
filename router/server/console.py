"""`GET /ui/`: the console's files, from the package (router/console/static).

Read once at start and served from memory with their content types, an ETag
and `Cache-Control: no-cache` (a browser keeps them but asks again each
time, so an upgraded router's page is picked up at once, for a 304 otherwise).
The page runs no inline script and loads nothing from elsewhere: a strict
Content-Security-Policy says so, and no other site may frame it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from aiohttp import web
from aiohttp.typedefs import Handler

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """The console's files by name (index.html, app.js, ...)."""
    assets = {}
    for entry in resources.files("router.console").joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if suffix in CONTENT_TYPES:
            body = entry.read_bytes()
            assets[entry.name] = Asset(body, CONTENT_TYPES[suffix], '"' + hashlib.sha256(body).hexdigest()[:20] + '"')
    return assets


def console_handler(assets: dict[str, Asset]) -> Handler:
    async def serve(request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("name") or "index.html"
        asset = assets.get(name)
        if asset is None:
            raise web.HTTPNotFound()
        headers = {"ETag": asset.etag, "Cache-Control": "no-cache", **SECURITY_HEADERS}
        if asset.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(body=asset.body, headers={"Content-Type": asset.content_type, **headers})

    return serve


async def to_console(request: web.Request) -> web.StreamResponse:
    return web.Response(status=308, headers={"Location": "/ui/"})


def add_routes(app: web.Application) -> None:
    serve = console_handler(load_assets())
    app.router.add_get("/ui", to_console)
    app.router.add_get("/ui/", serve)
    app.router.add_get("/ui/{name}", serve)
