"""What the reload tests share: `ollama-router serve` as a child process, catalog
files written the way an editor or a ConfigMap update writes them, and a load
generator that remembers which catalog was current when each request started."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from router.catalog import Catalog, parse_catalog
from tests.harness import REPO
from tests.processes import COMMAND, router_process

LLAMA = "llama3.2:3b"
QWEN = "qwen2.5:7b"
DEADLINE = 30.0  # seconds any one condition may take to come true


def catalog_text(
    urls: dict[str, str],
    models: dict[str, tuple[list[str], list[str]]],
    *,
    router: str = "health_interval: 1s",
    parallel: dict[str, int] | None = None,
) -> str:
    """A catalog: containers by URL (`parallel` overrides num_parallel), models as tag -> (containers, aliases)."""
    lines = ["version: 1", "defaults: {num_parallel: 6, keep_alive: 1h}", f"router: {{{router}}}", "containers:"]
    for name, url in urls.items():
        extra = f", num_parallel: {parallel[name]}" if parallel and name in parallel else ""
        lines.append(f"  {name}: {{url: '{url}'{extra}}}")
    lines.append("models:")
    for tag, (containers, aliases) in models.items():
        lines.append(f"  {tag}: {{containers: [{', '.join(containers)}], aliases: [{', '.join(aliases)}]}}")
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    """As editors and Kubernetes volume updates do: a new file renamed over the old."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def validate(path: Path) -> str:
    """What `ollama-router validate` says of a refused catalog (its stderr), exit status 1 checked."""
    done = subprocess.run([*COMMAND, "validate", str(path)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done
    return done.stderr.strip()


async def until(condition: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """Poll `condition` (sync or async) until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Served:
    """A running `ollama-router serve`."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path
    catalog: Path
    workers: int

    def lines(self, event: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines so far (those of `event` only, when given)."""
        found = []
        for raw in self.log.read_bytes().splitlines():
            if raw.startswith(b"{"):
                line = orjson.loads(raw)
                if event is None or line.get("event") == event:
                    found.append(line)
        return found

    def reloads(self, sha256: str, event: str = "catalog_reloaded") -> dict[Any, dict[str, Any]]:
        """The reload lines of this catalog, by worker (None without --workers)."""
        return {line.get("worker"): line for line in self.lines(event) if line.get("catalog_sha256") == sha256}

    async def reloaded(self, text: str) -> dict[Any, dict[str, Any]]:
        """Wait until every process logged that it now serves `text`."""
        sha = digest(text)
        return await until(lambda: (found := self.reloads(sha)) and len(found) == self.workers and found, f"every worker to load {sha[:12]}")

    def sighup(self) -> None:
        os.kill(self.process.pid, signal.SIGHUP)

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(c) for c in path.read_text().split()] if path.exists() else []


@contextlib.asynccontextmanager
async def serve(catalog: Path, log: Path, *args: str, workers: int = 1) -> AsyncIterator[Served]:
    """`ollama-router serve CATALOG ARGS` on a free port (`--workers N` when more than one), ready."""
    argv = ["serve", str(catalog), "--no-pull", *args] + (["--workers", str(workers)] if workers > 1 else [])
    async with router_process(argv, log) as child:
        yield Served(child.process, child.url, log, catalog, workers)


# --- the load generator -----------------------------------------------------------------


@dataclass
class Timeline:
    """The catalog versions as the test drives them: `confirmed` is current everywhere;
    `pending`, while a reload is under way, may already be current in some process."""

    catalogs: list[Catalog] = field(default_factory=list)
    confirmed: int = 0
    pending: int | None = None

    def add(self, text: str) -> int:
        self.catalogs.append(parse_catalog(text, "catalog.yaml").catalog)
        return len(self.catalogs) - 1

    def now(self) -> tuple[int, int]:
        """The versions that may be current for a request starting now."""
        return self.confirmed, self.pending if self.pending is not None else self.confirmed


@dataclass
class Outcome:
    name: str  # the model name the client sent
    kind: str
    # The catalog versions that may have been current when the router took it: the one
    # current everywhere when the client sent it, up to the newest one that may have been
    # current when the answer's headers came back (under load, a request sent before a
    # reload may reach the router after it).
    versions: tuple[int, int]
    started: float  # monotonic
    ended: float = 0.0
    status: int = 0
    container: str | None = None  # X-Router-Container
    served: str | None = None  # X-Router-Model
    complete: bool = False  # the whole answer arrived, its end marker included
    error: str | None = None

    def served_by(self, catalog: Catalog) -> bool:
        """Whether `catalog` explains who served it: the name resolves there to the model that
        answered, on one of that model's containers."""
        model = catalog.resolve(self.name)
        return model is not None and model.tag == self.served and self.container in model.containers


CHAT_STREAM = "/api/chat"
CHAT_OPENAI = "/v1/chat/completions"
GENERATE = "/api/generate"
STORIES = itertools.count()


def messages() -> list[dict[str, str]]:
    """A conversation of its own: many users, not one (affinity routing spreads conversations)."""
    return [{"role": "user", "content": f"Tell me story number {next(STORIES)}"}]


async def send(
    session: aiohttp.ClientSession,
    url: str,
    kind: str,
    name: str,
    outcome: Outcome | None = None,
    *,
    tokens: int = 16,
    timeline: Timeline | None = None,
) -> Outcome:
    """One request of `kind` (stream: a streamed /api/chat; openai: a non-streamed chat
    completion; generate: a non-streamed /api/generate) for model `name`, read whole;
    `timeline`: the catalog versions to note in the outcome."""
    if outcome is None:
        outcome = Outcome(name, kind, timeline.now() if timeline is not None else (0, 0), time.monotonic())
    if kind == "stream":
        body: dict[str, Any] = {"model": name, "messages": messages(), "options": {"num_predict": tokens}}
        path = CHAT_STREAM
    elif kind == "openai":
        body = {"model": name, "messages": messages(), "max_tokens": tokens}
        path = CHAT_OPENAI
    else:
        body = {"model": name, "prompt": f"hi {next(STORIES)}", "stream": False, "options": {"num_predict": tokens}}
        path = GENERATE
    async with session.post(url + path, data=orjson.dumps(body)) as response:
        if timeline is not None:
            outcome.versions = (outcome.versions[0], timeline.now()[1])
        outcome.status = response.status
        outcome.container = response.headers.get("X-Router-Container")
        outcome.served = response.headers.get("X-Router-Model")
        payload = await response.read()
    outcome.ended = time.monotonic()
    if outcome.status != 200:
        outcome.error = payload[:300].decode(errors="replace")
    elif kind == "stream":
        last = orjson.loads(payload.splitlines()[-1])
        outcome.complete = last.get("done") is True and "error" not in last
    elif kind == "openai":
        outcome.complete = bool(orjson.loads(payload)["choices"][0]["message"]["content"])
    else:
        outcome.complete = orjson.loads(payload).get("done") is True
    return outcome


class Load:
    """`streams` clients streaming chats and `others` clients sending non-streamed
    requests, back to back, for the names in `names`, until stopped."""

    def __init__(self, url: str, timeline: Timeline, names: Iterable[str], *, streams: int = 32, others: int = 8) -> None:
        self.url = url
        self.timeline = timeline
        self.names = list(names)
        self.outcomes: list[Outcome] = []
        self._stopping = False
        kinds = ["stream"] * streams + list(itertools.islice(itertools.cycle(["openai", "generate"]), others))
        self._clients = kinds
        self._tasks: list[asyncio.Task[None]] = []
        # a new connection per request: under --workers the kernel spreads them over the processes
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True))

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._client(i, kind)) for i, kind in enumerate(self._clients)]

    async def _client(self, index: int, kind: str) -> None:
        names = itertools.islice(itertools.cycle(self.names), index % len(self.names), None)
        for name in names:
            if self._stopping:
                return
            outcome = Outcome(name, kind, self.timeline.now(), time.monotonic())
            self.outcomes.append(outcome)
            try:
                await send(self._session, self.url, kind, name, outcome, tokens=10, timeline=self.timeline)
            except (aiohttp.ClientError, OSError, ValueError, IndexError) as exc:
                outcome.error = f"{type(exc).__name__}: {exc}"
                outcome.ended = time.monotonic()

    def in_flight(self, container: str) -> list[Outcome]:
        """Streams that have started and not ended, with the container that serves them known."""
        return [o for o in self.outcomes if o.ended == 0.0 and o.container == container]

    async def stop(self) -> list[Outcome]:
        self._stopping = True
        await asyncio.gather(*self._tasks)
        await self._session.close()
        return self.outcomes


async def reload_by_api(session: aiohttp.ClientSession, served: Served, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """POST /router/reload: its status and its JSON answer."""
    async with session.post(served.url + "/router/reload", headers=headers) as response:
        return response.status, orjson.loads(await response.read())


async def router_status(session: aiohttp.ClientSession, served: Served, headers: dict[str, str] | None = None) -> dict[str, Any]:
    async with session.get(served.url + "/router/status", headers=headers) as response:
        assert response.status == 200, await response.text()
        return orjson.loads(await response.read())  # type: ignore[no-any-return]
