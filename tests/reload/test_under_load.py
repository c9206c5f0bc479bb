"""Ten catalog reloads while 32 streams and non-streamed requests keep running:
a container added, one removed, an alias moved, a container's limit changed,
settings changed, a model moved to a new container, two bad catalogs in
between. Nothing fails, and every request is served by a container of the
catalog that was current when it started.

Real parts only: `ollama-router serve` as a child process (one process, and
`--workers 2`), emulators as child processes, aiohttp clients on loopback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.conftest import EmulatorFactory
from tests.reload.support import (
    LLAMA,
    QWEN,
    Load,
    Outcome,
    Served,
    Timeline,
    catalog_text,
    digest,
    serve,
    until,
    validate,
    write_atomically,
)

SERVED_PER_CATALOG = 30  # requests that start and end under each catalog before the next reload
# queues deep enough for every client at once (the load, not the capacity, is under test)
SETTINGS = "health_interval: 1s, max_queue: 64"
# what each process logs as the reload's trigger (a worker's POST /router/reload
# reloads that worker, then the supervisor passes a SIGHUP to every worker)
TRIGGERS = {
    ("sighup", 1): {"sighup"}, ("api", 1): {"api"}, ("watch", 1): {"file changed"},
    ("sighup", 2): {"sighup"}, ("api", 2): {"api", "sighup"}, ("watch", 2): {"file changed"},
}
CHANGED_SETTINGS = "health_interval: 1s, ttft_timeout: 30s, max_queue: 100, header_timeout: 20s"


@dataclass(frozen=True)
class Step:
    what: str
    text: str
    good: bool = True
    streams_on: str | None = None  # streams in flight on this container must outlive the reload
    restart_needed: tuple[str, ...] = ()


def steps(urls: dict[str, str]) -> list[Step]:
    def on(*names: str) -> dict[str, str]:
        return {name: urls[name] for name in names}

    start = catalog_text(on("a", "b", "c"), {LLAMA: (["a", "b"], ["chat"]), QWEN: (["c"], [])}, router=SETTINGS)
    added = catalog_text(on("a", "b", "c", "d"), {LLAMA: (["a", "b"], ["chat"]), QWEN: (["c", "d"], [])}, router=SETTINGS)
    alias_moved = catalog_text(on("a", "b", "c", "d"), {LLAMA: (["a", "b"], []), QWEN: (["c", "d"], ["chat"])}, router=SETTINGS)
    removed = catalog_text(on("a", "c", "d"), {LLAMA: (["a"], []), QWEN: (["c", "d"], ["chat"])}, router=SETTINGS)
    alias_back = catalog_text(on("a", "c", "d"), {LLAMA: (["a"], ["chat"]), QWEN: (["c", "d"], [])}, router=SETTINGS)
    limit = {"c": 2}
    resized = catalog_text(on("a", "c", "d"), {LLAMA: (["a"], ["chat"]), QWEN: (["c", "d"], [])}, router=SETTINGS, parallel=limit)
    settings = catalog_text(on("a", "c", "d"), {LLAMA: (["a"], ["chat"]), QWEN: (["c", "d"], [])}, router=CHANGED_SETTINGS, parallel=limit)
    moved = catalog_text(on("a", "e"), {LLAMA: (["a"], ["chat"]), QWEN: (["e"], [])}, router=CHANGED_SETTINGS)
    back = catalog_text(on("a", "b", "e"), {LLAMA: (["a", "b"], ["chat"]), QWEN: (["e"], [])}, router=CHANGED_SETTINGS)
    unknown_container = alias_moved.replace("containers: [a, b]", "containers: [a, zz]")
    broken_yaml = alias_back.replace("models:\n", "models: [\n")
    return [
        Step("start", start),
        Step("container d added", added),
        Step("alias chat moved to qwen", alias_moved),
        Step("a model names an unknown container", unknown_container, good=False),
        Step("container b removed", removed, streams_on="b"),
        Step("alias chat moved back", alias_back),
        Step("a YAML syntax error", broken_yaml, good=False),
        Step("container c's limit changed (removed, then added)", resized, streams_on="c"),
        Step("run-time and restart-only settings changed", settings, restart_needed=("header_timeout",)),
        # until a restart, every reload says the running header_timeout is not the file's
        Step("qwen moved from c and d to the new container e", moved, streams_on="d", restart_needed=("header_timeout",)),
        Step("container b back", back, restart_needed=("header_timeout",)),
    ]


async def _trigger(served: Served, how: str, session: aiohttp.ClientSession) -> dict[str, object] | None:
    """Start a reload; the answer of POST /router/reload, when that was the way."""
    if how == "sighup":
        served.sighup()
    elif how == "api":
        async with session.post(served.url + "/router/reload") as response:
            answer: dict[str, object] = orjson.loads(await response.read())
            assert response.status == (200 if answer["result"] != "refused" else 422), answer
            return answer
    return None  # "watch": writing the file was the trigger


async def _refused(served: Served, step: Step, path: Path, before: int, answer: dict[str, object] | None) -> None:
    """Refused exactly as `validate` refuses it: in the log of every process and in the reload's answer."""
    expected = validate(path)
    assert expected.startswith(f"{path}:"), expected
    lines = await until(lambda: len(found := served.lines("catalog_reload_refused")) >= before + served.workers and found,
                        f"every worker to refuse: {step.what}")
    for line in lines[before:]:
        assert line["error"] == expected
    if answer is not None:
        assert answer["result"] == "refused" and answer["error"] == expected


def _check(outcomes: list[Outcome], timeline: Timeline) -> None:
    failed = [o for o in outcomes if o.status != 200 or not o.complete or o.error]
    assert not failed, f"{len(failed)} of {len(outcomes)} requests failed, e.g. {failed[:5]}"
    wrong = [o for o in outcomes if not any(o.served_by(timeline.catalogs[v]) for v in range(o.versions[0], o.versions[1] + 1))]
    assert not wrong, f"{len(wrong)} requests served outside the catalog current at their start, e.g. {wrong[:5]}"


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    ("workers", "ways"),
    [(1, ("sighup", "api")), (1, ("watch",)), (2, ("sighup", "api")), (2, ("watch",))],
    ids=["one-process-signal-and-api", "one-process-watch", "two-workers-signal-and-api", "two-workers-watch"],
)
async def test_ten_reloads_under_load_fail_no_request(
    emulator: EmulatorFactory, tmp_path: Path, workers: int, ways: tuple[str, ...]
) -> None:
    emulators = {
        name: emulator(subprocess=True, models=[LLAMA, QWEN], embedding_models=[], num_parallel=8,
                       tokens_per_second=20, load_time=0.3)
        for name in "abcde"
    }
    plan = steps({name: e.url for name, e in emulators.items()})
    path = tmp_path / "catalog.yaml"
    path.write_text(plan[0].text)
    timeline = Timeline()
    timeline.add(plan[0].text)
    args = ["--watch"] if "watch" in ways else []
    async with serve(path, tmp_path / "router.log", *args, workers=workers) as served, aiohttp.ClientSession() as session:
        load = Load(served.url, timeline, ["chat", LLAMA, QWEN])
        load.start()
        try:
            for number, step in enumerate(plan[1:]):
                await _reload(served, session, load, timeline, step, ways[number % len(ways)], path)
        finally:
            outcomes = await load.stop()
        status = await _status(session, served)
    _check(outcomes, timeline)
    assert status["catalog"]["sha256"] == digest(plan[-1].text)
    assert status["catalog"]["path"] == str(path)
    assert status["catalog"]["last_reload_error"] is None
    last = timeline.catalogs[-1]
    assert {c["name"] for c in status["containers"]} == set(last.containers), "removed containers are dropped once idle"
    assert {o.container for o in outcomes} == {"a", "b", "c", "d", "e"}  # each served, under the catalogs that had it
    # e is in the last two catalogs only: every worker took them up and served from it
    assert {line.get("worker") for line in served.lines("request") if line.get("container") == "e"} == (
        {0, 1} if workers > 1 else {None}
    )


async def _reload(
    served: Served, session: aiohttp.ClientSession, load: Load, timeline: Timeline, step: Step, how: str, path: Path
) -> None:
    """One step: the file written, the reload triggered `how`, and what every process must then show."""
    refused_before = len(served.lines("catalog_reload_refused"))
    outlasting: list[Outcome] = []
    if step.streams_on is not None:
        outlasting = await until(lambda: load.in_flight(step.streams_on or ""), f"a stream in flight on {step.streams_on}")
    if step.good:
        timeline.pending = timeline.add(step.text)
    write_atomically(path, step.text)
    answer = await _trigger(served, how, session)
    if not step.good:
        await _refused(served, step, path, refused_before, answer)
        return
    lines = await served.reloaded(step.text)
    timeline.confirmed, timeline.pending = len(timeline.catalogs) - 1, None
    assert {line["trigger"] for line in lines.values()} == TRIGGERS[how, served.workers], lines
    assert all(line.get("restart_needed", []) == list(step.restart_needed) for line in lines.values()), lines
    if answer is not None:
        assert answer["result"] == "reloaded" and answer["catalog_sha256"] == digest(step.text), answer
    # the streams running on the container that left (or changed) when the reload began end whole
    await until(lambda: all(o.ended for o in outlasting), "the streams in flight at the reload to end")
    assert all(o.complete and o.status == 200 for o in outlasting), outlasting
    version = timeline.confirmed
    await until(lambda: sum(1 for o in load.outcomes if o.complete and o.versions == (version, version)) >= SERVED_PER_CATALOG,
                "requests served under this catalog")


async def _status(session: aiohttp.ClientSession, served: Served) -> dict[str, object]:
    async def settled() -> dict[str, object] | None:
        async with session.get(served.url + "/router/status") as response:
            status: dict[str, object] = await response.json()
        names = [c["name"] for c in status["containers"]]  # type: ignore[attr-defined]
        return status if len(names) == len(set(names)) and all(c["state"] != "draining" for c in status["containers"]) else None  # type: ignore[attr-defined]

    return await until(settled, "drained containers to go")  # type: ignore[no-any-return]

