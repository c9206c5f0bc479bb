"""The router through curl, the way the README and the demo tell users to call it."""

from __future__ import annotations

import orjson
import pytest

from tests.harness import RouterFleet
from tests.server.support import LLAMA, MESSAGES, curl

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_readme_chat_example(fleet: RouterFleet) -> None:
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": MESSAGES}).decode()
    status, headers, answer = await curl(
        f"{fleet.url}/v1/chat/completions", "-H", "Content-Type: application/json", "-d", body
    )
    assert status == 200
    assert headers["content-type"] == "application/json"
    reply = orjson.loads(answer)
    assert reply["model"] == LLAMA and reply["choices"][0]["message"]["content"]


async def test_streamed_chat_without_content_type_arrives_as_ndjson(fleet: RouterFleet) -> None:
    body = orjson.dumps({"model": "gpt-4o", "messages": MESSAGES}).decode()
    status, headers, answer = await curl("-N", f"{fleet.url}/api/chat", "-d", body)  # curl -d sends a form type
    assert status == 200
    assert headers["content-type"] == "application/x-ndjson"
    lines = [orjson.loads(line) for line in answer.splitlines()]
    assert len(lines) > 3 and lines[-1]["done"] is True
    assert "".join(line["message"]["content"] for line in lines).strip()


@pytest.mark.parametrize(("flag", "body"), [((), b"Ollama is running"), (("-I",), b"")])
async def test_root(fleet: RouterFleet, flag: tuple[str, ...], body: bytes) -> None:
    status, headers, answer = await curl(*flag, fleet.url + "/")
    assert status == 200 and answer == body
    assert headers["x-request-id"]


async def test_unknown_model(fleet: RouterFleet) -> None:
    status, _, answer = await curl(f"{fleet.url}/api/generate", "-d", '{"model": "nope", "prompt": "hi"}')
    assert status == 404
    assert orjson.loads(answer) == {"error": "model 'nope' not found"}
