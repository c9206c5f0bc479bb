"""Reading `/router/events` the way scripts do: curl as a child process, or a raw
socket, with a strict parser for what arrives (server-sent events)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

FIELDS = ("id", "event", "data", "retry")


@dataclass(frozen=True)
class Item:
    """One block of the stream: an event (kind, id, data), a `retry:` line or a comment."""

    kind: str | None = None
    id: str | None = None
    data: Any = None
    comment: str | None = None
    retry: int | None = None


class SseParser:
    """Incremental and strict: every line is `field: value` for a known field or a
    `:` comment, every block ends with a blank line, every `data:` is one JSON line."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[Item]:
        self.buffer += data
        items = []
        while (end := self.buffer.find(b"\n\n")) >= 0:
            block, self.buffer = self.buffer[:end].decode(), self.buffer[end + 2 :]
            items.append(parse_block(block))
        return items


def parse_block(block: str) -> Item:
    fields: dict[str, str] = {}
    comments = []
    for line in block.split("\n"):
        assert line, f"a blank line inside a block: {block!r}"
        if line.startswith(":"):
            comments.append(line[1:].strip())
            continue
        name, colon, value = line.partition(": ")
        assert colon and name in FIELDS, f"not a server-sent event line: {line!r}"
        assert name not in fields, f"{name} twice in one event: {block!r}"
        fields[name] = value
    if not fields:
        return Item(comment=" ".join(comments))
    if "retry" in fields:
        assert set(fields) == {"retry"}
        return Item(retry=int(fields["retry"]))
    assert "event" in fields and "data" in fields, f"an event needs event: and data: lines: {block!r}"
    return Item(kind=fields["event"], id=fields.get("id"), data=orjson.loads(fields["data"]))


class CurlStream:
    """`curl -sS -N -i URL`, read as it arrives."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.parser = SseParser()
        self.headers: dict[str, str] = {}
        self.status = 0
        self.items: list[Item] = []
        self.cursor = 0  # items before it were looked at by `until`
        self.ended = False

    @classmethod
    async def open(cls, url: str, *headers: str) -> CurlStream:
        args = [arg for header in headers for arg in ("-H", header)]
        process = await asyncio.create_subprocess_exec(
            "curl", "-sS", "-N", "-i", "--max-time", "60", *args, url, stdout=asyncio.subprocess.PIPE
        )
        stream = cls(process)
        await stream._read_head()
        return stream

    async def _read_head(self) -> None:
        assert self.process.stdout is not None
        status_line = (await self.process.stdout.readline()).decode().strip()
        self.status = int(status_line.split()[1])
        while line := (await self.process.stdout.readline()).decode().strip():
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()

    async def body(self) -> bytes:
        """The rest, for an answer that is not a stream (an error)."""
        assert self.process.stdout is not None
        data = await self.process.stdout.read()
        await self.process.wait()
        return data

    async def until(self, predicate: Callable[[Item], bool], timeout: float = 15.0) -> Item:
        """The next item (after the last one `until` returned) that matches; every item read is kept in `items`."""
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                while self.cursor < len(self.items):
                    item = self.items[self.cursor]
                    self.cursor += 1
                    if predicate(item):
                        return item
                data = await self.process.stdout.read(65536)
                if not data:
                    self.ended = True
                    raise EOFError("the stream ended")
                self.items += self.parser.feed(data)

    def events(self, kind: str | None = None) -> list[Item]:
        return [i for i in self.items if i.kind is not None and i.kind != "snapshot" and (kind is None or i.kind == kind)]

    async def close(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
        await self.process.wait()


def kind_is(kind: str) -> Callable[[Item], bool]:
    return lambda item: item.kind == kind
