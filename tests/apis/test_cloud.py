"""Cloud model names (Ollama sends them to ollama.com) never reach a container
unless the catalog lists the model; /api/status says what a client can reach."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest

from tests.harness import RouterFleet, catalog_yaml, router_fleet

pytestmark = pytest.mark.asyncio(loop_scope="module")

LOCAL = catalog_yaml("a", models={"llama3.2:3b": "containers: [a]"})
CLOUD_NAMES = ["gpt-oss:120b-cloud", "glm-4.7:cloud", "Kimi-K2:CLOUD", "library/qwen3:480b-cloud"]
# (path, body naming the model, how the error names the problem)
JSON_ENDPOINTS: list[tuple[str, dict[str, Any]]] = [
    ("/api/chat", {"messages": [{"role": "user", "content": "hi"}]}),
    ("/api/generate", {"prompt": "hi"}),
    ("/api/embed", {"input": "hi"}),
    ("/api/show", {}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/embeddings", {"input": "hi"}),
    ("/v1/responses", {"input": "hi"}),
    ("/v1/messages", {"max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/messages/count_tokens", {"messages": [{"role": "user", "content": "hi"}]}),
]


def error_message(path: str, body: Any) -> str:
    if path.startswith("/api/"):
        return str(body["error"])
    if path.startswith("/v1/messages"):
        assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
    else:
        assert body["error"]["code"] == "model_not_found"
    return str(body["error"]["message"])


async def cloud_stats(fleet: RouterFleet) -> list[tuple[int, int]]:
    return [((s := await b.stats())["requests"], s["cloud_requests"]) for b in fleet.backends.values()]


async def test_cloud_names_outside_the_catalog_reach_no_container() -> None:
    async with router_fleet(LOCAL) as fleet:
        before = await cloud_stats(fleet)
        for name in CLOUD_NAMES:
            for path, body in JSON_ENDPOINTS:
                async with fleet.session.post(fleet.url + path, data=orjson.dumps({"model": name, **body})) as response:
                    assert response.status == 404, (path, name)
                    message = error_message(path, orjson.loads(await response.read()))
                assert message.startswith(f"model '{name}' not found: cloud models are served only when")
            async with fleet.session.get(fleet.url + f"/v1/models/{name}") as response:
                assert response.status == 404
            form = aiohttp.FormData({"model": name})
            form.add_field("file", b"RIFF....WAVE", filename="a.wav")
            async with fleet.session.post(fleet.url + "/v1/audio/transcriptions", data=form) as response:
                assert response.status == 404
        assert await cloud_stats(fleet) == before  # not one request, cloud or other, reached the container


CLOUDY = catalog_yaml("c1", "c2", models={"llama3.2:3b": "containers: [c1]", "gpt-oss:120b-cloud": "containers: [c1, c2]"})


async def test_a_cloud_model_the_catalog_lists_is_an_ordinary_model() -> None:
    async with router_fleet(CLOUDY) as fleet:
        assert await cloud_stats(fleet) == [(1, 0), (0, 0)]  # ready without pinging ollama.com: only llama was preloaded
        body = orjson.dumps({"model": "gpt-oss:120b-cloud", "messages": [{"role": "user", "content": "hi"}], "stream": False})
        async with fleet.session.post(fleet.url + "/api/chat", data=body) as response:
            # forwarded; the emulator (no network) answers as Ollama without ollama.com does
            assert response.status == 502
            assert "ollama.com" in (await response.json())["error"]
        assert sum(cloud for _, cloud in await cloud_stats(fleet)) == 2  # each container was tried


@pytest.mark.parametrize(
    ("catalog", "per_container", "status"),
    [
        (LOCAL, {}, {"disabled": True, "source": "config"}),  # the router's catalog has no cloud model
        (CLOUDY, {"c1": {"no_cloud": True}}, {"disabled": False, "source": "none"}),  # c2 reaches ollama.com
        (CLOUDY, {"c1": {"no_cloud": True}, "c2": {"no_cloud": True}}, {"disabled": True, "source": "config"}),
        (CLOUDY, {"c1": {"no_cloud": True}, "c2": {"no_cloud_env": True}}, {"disabled": True, "source": "both"}),
    ],
)
async def test_api_status_for_the_fleet(catalog: str, per_container: dict[str, Any], status: dict[str, Any]) -> None:
    async with router_fleet(catalog, per_container=per_container) as fleet, fleet.session.get(fleet.url + "/api/status") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        assert await response.json() == {"cloud": status}
