"""`/ui/`: the console's files as a browser gets them (curl): types, caching, the
security policy, their size, and nothing the page does not need."""

from __future__ import annotations

import re

import pytest

from router.server.console import load_assets
from tests.console.support import CATALOG, FAST
from tests.harness import curl, router_fleet

BUDGET = 100 * 1024  # every asset together, uncompressed


def test_the_assets_are_few_small_and_load_nothing_from_elsewhere() -> None:
    assets = load_assets()
    assert set(assets) == {"index.html", "app.js", "style.css", "favicon.svg"}
    assert sum(len(a.body) for a in assets.values()) < BUDGET
    for asset in assets.values():
        text = asset.body.decode()
        assert not re.search(r"(src|href)=\"(https?:)?//", text), "a CDN or another site"
        assert "http://" not in text.replace("http://www.w3.org/", "") and "https://" not in text
    index = assets["index.html"].body.decode()
    assert "<script>" not in index and " style=" not in index  # the CSP allows no inline script or style


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/style.css", "text/css; charset=utf-8"),
        ("/ui/favicon.svg", "image/svg+xml"),
    ],
)
async def test_served_with_their_types_a_strict_policy_and_revalidation(path: str, content_type: str) -> None:
    async with router_fleet(CATALOG, settings=FAST) as fleet:
        status, headers, body = await curl(fleet.url + path)
        assert status == 200 and headers["content-type"] == content_type and body
        assert headers["cache-control"] == "no-cache"
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        again, again_headers, again_body = await curl("-H", f"If-None-Match: {headers['etag']}", fleet.url + path)
        assert again == 304 and again_body == b"" and again_headers["etag"] == headers["etag"]


async def test_ui_without_slash_redirects_and_unknown_files_are_404() -> None:
    async with router_fleet(CATALOG, settings=FAST) as fleet:
        status, headers, _ = await curl(fleet.url + "/ui")
        assert status == 308 and headers["location"] == "/ui/"
        for path in ("/ui/nothing.js", "/ui/..%2fpyproject.toml", "/ui/%2e%2e/router/settings.py"):
            status, _, body = await curl("--path-as-is", fleet.url + path)
            assert status == 404 and body == b"404 page not found"
        status, _, body = await curl(fleet.url + "/")
        assert body == b"Ollama is running"  # / stays Ollama's (clients probe it)
