"""Token counts read from the last bytes of real answers (an emulator's, taken
as the proxy keeps them): the Responses and Anthropic usage, streamed or not."""

from __future__ import annotations

import urllib.request
from typing import Any

import orjson
import pytest

from router.server.metrics import tail_stats
from router.server.proxy import TAIL_BYTES
from tests.conftest import EmulatorFactory

ASKS: dict[str, tuple[str, dict[str, Any]]] = {
    "responses": ("/v1/responses", {"model": "llama3.2", "input": "Say hello", "instructions": "x" * 3000}),
    "responses-tools": ("/v1/responses", {"model": "llama3.2", "input": "Weather in Paris?", "tools": [
        {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]}),
    "messages": ("/v1/messages", {"model": "llama3.2", "max_tokens": 64, "messages": [{"role": "user", "content": "Say hello"}]}),
    "messages-thinking": ("/v1/messages", {"model": "qwen3:8b", "max_tokens": 64, "thinking": {"type": "enabled"},
                                           "messages": [{"role": "user", "content": "Say hello"}]}),
}


def kept_tail(records: list[bytes]) -> bytes:
    """The tail the proxy keeps when the answer arrives as these writes."""
    tail = b""
    for chunk in records:
        tail = tail[-TAIL_BYTES:] + chunk if len(chunk) < TAIL_BYTES else chunk
    return tail


def usage_of(path: str, body: bytes, stream: bool) -> dict[str, int]:
    if not stream:
        return dict(orjson.loads(body)["usage"])
    events = [orjson.loads(record.split(b"\ndata: ", 1)[1]) for record in body.strip().split(b"\n\n")]
    if path == "/v1/responses":
        return dict(events[-1]["response"]["usage"])
    return dict(next(e for e in events if e["type"] == "message_delta")["usage"])


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("ask", list(ASKS))
def test_usage_is_read_from_the_tail(emulator: EmulatorFactory, ask: str, stream: bool) -> None:
    emu = emulator(models=["llama3.2", "qwen3:8b"])
    path, body = ASKS[ask]
    request = urllib.request.Request(emu.url + path, data=orjson.dumps({**body, "stream": stream}), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
        raw = answer.read()
    records = [record + b"\n\n" for record in raw.strip().split(b"\n\n")] if stream else [raw]
    usage = usage_of(path, raw, stream)
    stats = tail_stats(kept_tail(records))
    assert stats[b"input_tokens"] == usage["input_tokens"] > 0
    assert stats[b"output_tokens"] == usage["output_tokens"]
