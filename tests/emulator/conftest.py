"""Raw-HTTP helpers for the emulator's wire tests (exact bytes and headers)."""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def content_type(self) -> str | None:
        return self.headers.get("Content-Type")

    def json(self) -> Any:
        return json.loads(self.body)

    def lines(self) -> list[dict[str, Any]]:
        """NDJSON lines (the body must end with a newline)."""
        assert self.body.endswith(b"\n"), self.body[-80:]
        return [json.loads(line) for line in self.body.split(b"\n")[:-1]]

    def events(self) -> list[str]:
        """SSE `data:` payloads, in order (the framing is asserted on the way)."""
        assert self.body.endswith(b"\n\n"), self.body[-80:]
        chunks = self.body.split(b"\n\n")[:-1]
        assert all(chunk.startswith(b"data: ") for chunk in chunks), chunks
        return [chunk[len(b"data: ") :].decode() for chunk in chunks]


def named_events(body: bytes) -> list[tuple[str, dict[str, Any], bytes]]:
    """`event:` + `data:` records (Responses, Anthropic): (name, data, raw data bytes),
    the framing asserted on the way: exactly two lines per record, a blank line after each."""
    assert body.endswith(b"\n\n"), body[-80:]
    records = []
    for chunk in body[:-2].split(b"\n\n"):
        event_line, data_line = chunk.split(b"\n")
        assert event_line.startswith(b"event: ") and data_line.startswith(b"data: "), chunk
        data = data_line[len(b"data: ") :]
        records.append((event_line[len(b"event: ") :].decode(), json.loads(data), data))
    return records


def raw(
    url: str,
    method: str,
    path: str,
    body: bytes | dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> Reply:
    """One HTTP request, returning the exact (de-chunked) body bytes."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    try:
        connection.request(method, path, body=data, headers=headers or {})
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


def wait_until(predicate, timeout: float = 5.0) -> None:
    """Poll `predicate` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


@pytest.fixture
def emu(emulator):  # type: ignore[no-untyped-def]
    """The default in-process emulator, no delays (see tests/conftest.py)."""
    return emulator()
