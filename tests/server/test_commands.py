"""The two commands as a user runs them: `serve` logging one structured line per
request, and `demo` answering a chat. Child processes, stopped by PID."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson

from tests.processes import router_process
from tests.server.support import MESSAGES


@contextlib.asynccontextmanager
async def command(args: list[str], log: Path) -> AsyncIterator[str]:
    """`ollama-router ARGS` on a free port, ready; yields its URL. SIGTERM at the end, exit 0 expected."""
    async with router_process(args, log) as child:
        yield child.url


def _catalog(path: Path, emulator_url: str) -> Path:
    path.write_text(
        f"""
version: 1
containers:
  q: {{url: "{emulator_url}"}}
models:
  qwen2.5:7b: {{containers: [q], aliases: [gpt-4o]}}
"""
    )
    return path


def _request_lines(log: Path) -> dict[str, list[dict[str, Any]]]:
    """The access log's lines, by request id."""
    lines: dict[str, list[dict[str, Any]]] = {}
    for raw in log.read_bytes().splitlines():
        if raw.startswith(b"{"):
            line = orjson.loads(raw)
            if line.get("event") == "request":
                lines.setdefault(line["request_id"], []).append(line)
    return lines


async def _post(session: aiohttp.ClientSession, url: str, request_id: str, body: dict[str, Any]) -> bytes:
    async with session.post(url, data=orjson.dumps(body), headers={"X-Request-Id": request_id}) as response:
        return await response.read()


async def test_serve_logs_one_json_line_per_request(emulator: Callable[..., Any], tmp_path: Path) -> None:
    backend = emulator(models=["qwen2.5:7b"], embedding_models=[], tokens_per_second=50, response_tokens=200)
    log = tmp_path / "serve.log"
    async with command(["serve", str(_catalog(tmp_path / "c.yaml", backend.url))], log) as url, aiohttp.ClientSession() as session:
        answer = await _post(session, url + "/v1/chat/completions", "log-answer",
                             {"model": "gpt-4o", "messages": MESSAGES, "max_tokens": 8})
        streamed = await _post(session, url + "/api/generate", "log-stream",
                               {"model": "qwen2.5:7b", "prompt": "hi", "options": {"num_predict": 8}})
        missing = await _post(session, url + "/api/chat", "log-404", {"model": "nope", "messages": MESSAGES})
        async with session.post(url + "/api/chat", data=orjson.dumps({"model": "gpt-4o", "messages": MESSAGES}),
                                headers={"X-Request-Id": "log-left"}) as response:
            await response.content.readany()  # then hang up mid-answer
    lines = _request_lines(log)
    assert all(len(lines[i]) == 1 for i in ("log-answer", "log-stream", "log-404", "log-left")), lines
    for request_id, method, path, model, status, body in [
        ("log-answer", "POST", "/v1/chat/completions", "gpt-4o", 200, answer),
        ("log-stream", "POST", "/api/generate", "qwen2.5:7b", 200, streamed),
        ("log-404", "POST", "/api/chat", "nope", 404, missing),
    ]:
        [line] = lines[request_id]
        assert (line["method"], line["path"], line["model"], line["status"]) == (method, path, model, status)
        assert line["bytes"] == len(body)
        assert line["duration_ms"] >= 0
        if status == 200:
            assert line["container"] == "q"
            assert 0 < line["ttfb_ms"] <= line["duration_ms"]
    [left] = lines["log-left"]
    assert left["client_left"] is True and left["container"] == "q"


async def test_serve_console_logs_with_the_flag(emulator: Callable[..., Any], tmp_path: Path) -> None:
    backend = emulator(models=["qwen2.5:7b"], embedding_models=[])
    log = tmp_path / "serve.log"
    catalog = _catalog(tmp_path / "c.yaml", backend.url)
    async with command(["serve", str(catalog), "--log-format", "console"], log) as url, aiohttp.ClientSession() as session:
        await _post(session, url + "/api/chat", "console-1", {"model": "gpt-4o", "messages": MESSAGES, "stream": False})
    [line] = [t for t in log.read_text().splitlines() if "request_id=console-1" in t]
    assert not line.startswith("{")
    assert "request" in line and "status=200" in line and "container=q" in line


async def test_demo_answers_a_chat(tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    async with command(["demo"], log) as url:
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        reply = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=8)
        await client.close()
    assert reply.choices[0].message.content
    assert f"{url}/v1" in log.read_text()  # it told the user where to point the SDK
