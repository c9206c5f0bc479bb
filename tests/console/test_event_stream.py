"""`/router/events` as scripts see it: curl and raw sockets against a real router
in front of emulators. Well-formed server-sent events, resuming, heartbeats,
snapshots that agree with /router/status and /metrics, slow clients."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from router.server.event_stream import EVENT_STREAMS, MAX_STREAMS
from router.settings import RouterSettings
from tests.console.sse import CurlStream, Item, SseParser, kind_is
from tests.console.support import CATALOG, FAST, LLAMA, QWEN, Load, chat, metrics, start_router, total, wait_for
from tests.harness import router_fleet

P = "ollama_router_"
SNAPSHOT_ONLY_FIELDS = ("uptime_seconds", "now", "window", "settings", "viewer")
MOVING_CONTAINER_FIELDS = ("last_probe", "loaded")  # re-read by each probe


def is_event(item: Item) -> bool:
    return item.kind is not None and item.kind != "snapshot"


async def test_curl_gets_recent_events_then_live_ones_then_snapshots() -> None:
    async with router_fleet(CATALOG, settings=FAST) as fleet:
        stream = await CurlStream.open(fleet.url + "/router/events")
        try:
            assert stream.status == 200
            assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
            assert stream.headers["cache-control"] == "no-store"
            assert (await stream.until(lambda i: True)).retry == 1000
            snapshot = await stream.until(kind_is("snapshot"))
            replayed = stream.events()
            # the start-up transitions, from the router's history, each with its id, kind and data
            assert {(e.kind, e.data["container"]) for e in replayed} >= {("container_up", c) for c in "abq"}
            instance = replayed[0].id.split(".")[0]
            numbers = [int(e.id.split(".")[1]) for e in replayed]
            assert all(e.id.startswith(instance + ".") for e in replayed) and numbers == sorted(numbers)
            assert all(e.data["kind"] == e.kind and e.data["id"] == int(e.id.split(".")[1]) for e in replayed)
            assert {c["name"] for c in snapshot.data["containers"]} == {"a", "b", "q"}

            # live: both llama containers answer busy, so qwen serves it as a fallback
            for name in ("a", "b"):
                await fleet.backends[name].add_fault("busy", count=1)
            assert await chat(fleet, LLAMA) == 200
            served = await stream.until(kind_is("fallback_served"))
            assert (served.data["model"], served.data["to"], served.data["container"]) == (LLAMA, QWEN, "q")
            assert int(served.id.split(".")[1]) > numbers[-1]
            # snapshots keep coming, each one newer
            later = await stream.until(kind_is("snapshot"))
            assert later.data["now"] > snapshot.data["now"] and later.id is None
        finally:
            await stream.close()


async def test_snapshot_numbers_match_router_status_and_metrics() -> None:
    async with router_fleet(CATALOG, settings=FAST) as fleet:
        await fleet.wait_warm()
        load = Load(fleet, [LLAMA, QWEN])
        await wait_for(lambda: _sent(load, 12))
        await load.stop()
        for name in ("a", "b"):  # one fallback
            await fleet.backends[name].add_fault("busy", count=1)
        assert await chat(fleet, LLAMA) == 200
        await fleet.backends["q"].add_fault("cut", count=1, after_tokens=2)  # one broken stream
        assert await chat(fleet, QWEN) == 200
        stream = await CurlStream.open(fleet.url + "/router/events")
        try:
            snapshot = (await stream.until(kind_is("snapshot"))).data
            status = await fleet.status()
            samples = await metrics(fleet)
        finally:
            await stream.close()

        # the fleet's state: the same document as /router/status (but for what moves on its own)
        assert {k: v for k, v in snapshot.items() if k not in SNAPSHOT_ONLY_FIELDS} | {"uptime_seconds": 0} == status | {"uptime_seconds": 0}
        for shown, answered in zip(snapshot["containers"], status["containers"], strict=True):
            for field in MOVING_CONTAINER_FIELDS:
                shown.pop(field), answered.pop(field)
            assert shown == answered
        # the last minute (this router is younger than a minute): the counters of /metrics
        window = snapshot["window"]
        assert snapshot["counters"]["fallbacks"] == 1
        for model in (LLAMA, QWEN):
            assert window["models"][model]["requests"] == total(samples, P + "requests_total", model=model) > 0
        assert window["models"][LLAMA]["fallbacks"] == 1 == window["containers"]["q"]["fallbacks"] == window["total"]["fallbacks"]
        assert window["total"]["tokens"] == total(samples, P + "completion_tokens_total") > 0
        assert window["total"]["errors"] == status["counters"]["stream_failures"] == 1
        assert window["models"][QWEN]["errors"] == 1 and window["models"][LLAMA]["errors"] == 0
        for name in ("a", "b", "q"):
            served = total(samples, P + "requests_total", container=name)
            assert window["containers"][name]["requests"] == served > 0
        ttft = window["models"][LLAMA]
        assert 0 < ttft["ttft_p50"] <= ttft["ttft_p95"]
        assert window["total"]["requests_per_s"] > 0 and window["total"]["tokens_per_s"] > 0


async def _sent(load: Load, count: int) -> bool:
    return len(load.statuses) >= count


async def test_resuming_with_last_event_id() -> None:
    async with router_fleet(CATALOG, settings=FAST) as fleet:
        first = await CurlStream.open(fleet.url + "/router/events?snapshot=0")
        try:
            await first.until(lambda i: i.kind == "container_up" and i.data["container"] == "q")
        finally:
            await first.close()
        ids = [e.id for e in first.events()]
        assert len(ids) >= 3

        # after the second event: the rest, nothing before
        resumed = await CurlStream.open(fleet.url + "/router/events?snapshot=0", f"Last-Event-ID: {ids[1]}")
        try:
            assert (await resumed.until(is_event)).id == ids[2]
        finally:
            await resumed.close()

        # an id from another router instance (before a restart): everything afresh
        instance, _, number = ids[-1].partition(".")
        other = "0" * len(instance) if instance != "0" * len(instance) else "1" * len(instance)
        fresh = await CurlStream.open(fleet.url + "/router/events?snapshot=0", f"Last-Event-ID: {other}.{number}")
        try:
            assert (await fresh.until(is_event)).id == ids[0]
        finally:
            await fresh.close()

        # a Last-Event-ID this router never sent, and a bad flag: 400 in the router's shape
        for query, header in (("", "Last-Event-ID: banana"), ("?snapshot=maybe", "X-Nothing: 1")):
            bad = await CurlStream.open(fleet.url + "/router/events" + query, header)
            assert bad.status == 400
            assert "error" in orjson.loads(await bad.body())


async def test_events_older_than_the_history_are_reported_missing() -> None:
    async with router_fleet(CATALOG, settings=FAST) as fleet:
        hub = fleet.services.events
        first = hub.publish("test_marker", n=0)
        for n in range(1, 600):  # more than the history keeps
            hub.publish("test_marker", n=n)
        instance = fleet.router.runner.app[EVENT_STREAMS].instance
        stream = await CurlStream.open(fleet.url + "/router/events?snapshot=0", f"Last-Event-ID: {instance}.{first.id}")
        try:
            dropped = await stream.until(is_event)
            oldest_kept = await stream.until(is_event)
        finally:
            await stream.close()
        assert dropped.kind == "dropped"
        assert dropped.data["dropped"] == oldest_kept.data["id"] - first.id - 1 > 0


async def test_heartbeats_come_at_the_configured_interval_and_the_default_is_at_most_15_s() -> None:
    assert RouterSettings().events_heartbeat <= 15
    assert RouterSettings().snapshot_interval <= 1
    with pytest.raises(ValidationError):
        RouterSettings(events_heartbeat=20)
    async with router_fleet(CATALOG, settings={**FAST, "events_heartbeat": 0.3}) as fleet:
        stream = await CurlStream.open(fleet.url + "/router/events?snapshot=0")
        try:
            for _ in range(3):
                assert (await stream.until(lambda i: i.comment is not None, timeout=10)).comment == "heartbeat"
        finally:
            await stream.close()
        assert not [i for i in stream.items if i.kind == "snapshot"]  # snapshot=0: events and heartbeats only


async def test_a_client_that_never_reads_does_not_slow_the_router_and_is_told_what_it_missed() -> None:
    async with router_fleet(CATALOG, settings=FAST) as fleet:
        streams = fleet.router.runner.app[EVENT_STREAMS]
        hub = fleet.services.events
        port = int(fleet.url.rsplit(":", 1)[1])
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", port))
        slow.sendall(b"GET /router/events?snapshot=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        fast = await CurlStream.open(fleet.url + "/router/events?snapshot=0")
        try:
            await wait_for(lambda: _streams_open(streams, 2))
            slow_stream = next(s for s in streams.open if s.request.transport is not None and s.request.transport.get_extra_info("peername")[1] == slow.getsockname()[1])
            mark = hub.publish("test_start").id
            reading = asyncio.create_task(fast.until(lambda i: i.kind == "test_end", timeout=120))
            published = 0
            padding = "x" * 4096
            while slow_stream.subscription.dropped == 0 or published < 2000:
                for _ in range(25):
                    hub.publish("test_load", padding=padding)
                    published += 1
                await asyncio.sleep(0.01)  # about 10 MB/s: more than the slow client takes, less than curl reads
                assert published < 50_000, "the slow client never fell behind"
            # meanwhile the router serves as ever, and the client that reads missed nothing
            assert await chat(fleet, QWEN) == 200
            end = hub.publish("test_end").id
            await reading
            fast_ids = [int(e.id.split(".")[1]) for e in fast.events() if e.kind in ("test_load", "test_end")]
            assert fast_ids == list(range(mark + 1, end + 1)) and not fast.events("dropped")

            # the slow client reads at last (its queue was full: the end markers go on until one reaches it);
            # what it got, plus what it is told it missed, is everything
            reader = asyncio.create_task(_read_raw_until(slow, "test_end"))
            while not reader.done():
                hub.publish("test_end")
                await asyncio.wait([reader], timeout=0.1)
            got = reader.result()
            last = int(next(i for i in got if i.kind == "test_end").id.split(".")[1])
            received = [i for i in got if i.kind in ("test_load", "test_end") and mark < int(i.id.split(".")[1]) <= last]
            missed = sum(i.data["dropped"] for i in got if i.kind == "dropped")
            assert missed > 0
            assert len(received) + missed == last - mark
        finally:
            slow.close()
            await fast.close()


async def _read_raw_until(sock: socket.socket, kind: str) -> list[Item]:
    """The events on a raw HTTP/1.1 connection (chunked), up to one of `kind`."""
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    raw = b""
    while b"\r\n\r\n" not in raw:
        raw += await loop.sock_recv(sock, 65536)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    dechunk, parser = Dechunker(), SseParser()
    got = parser.feed(dechunk(body))
    async with asyncio.timeout(60):
        while not any(i.kind == kind for i in got):
            data = await loop.sock_recv(sock, 1 << 20)
            assert data, "the router closed the connection"
            got += parser.feed(dechunk(data))
    return got


class Dechunker:
    """HTTP/1.1's chunked transfer coding, undone as bytes arrive."""

    def __init__(self) -> None:
        self.buffer = b""
        self.left = 0  # bytes of the current chunk still to come

    def __call__(self, data: bytes) -> bytes:
        self.buffer += data
        out = []
        while self.buffer:
            if self.left:
                piece = self.buffer[: self.left]
                out.append(piece)
                self.buffer = self.buffer[len(piece) :]
                self.left -= len(piece)
                continue
            size, crlf, rest = self.buffer.partition(b"\r\n")
            if not crlf:
                break
            if not size:  # the CRLF that ends a chunk's data
                self.buffer = rest
                continue
            self.left, self.buffer = int(size, 16), rest
        return b"".join(out)


async def _streams_open(streams: object, count: int) -> bool:
    return len(streams.open) >= count  # type: ignore[attr-defined]


async def test_too_many_streams_are_refused_with_503() -> None:
    async with router_fleet(CATALOG, settings=FAST) as fleet:
        streams = fleet.router.runner.app[EVENT_STREAMS]
        port = int(fleet.url.rsplit(":", 1)[1])
        held = []
        try:
            for _ in range(MAX_STREAMS):
                sock = socket.create_connection(("127.0.0.1", port))
                sock.sendall(b"GET /router/events?snapshot=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                held.append(sock)
            await wait_for(lambda: _streams_open(streams, MAX_STREAMS))
            async with fleet.session.get(fleet.url + "/router/events") as response:
                assert response.status == 503
                assert "too many event streams" in (await response.json())["error"]
        finally:
            for sock in held:
                sock.close()
        await wait_for(lambda: _none_open(streams))
        assert fleet.services.events.subscribers == 0


async def _none_open(streams: object) -> bool:
    return not streams.open  # type: ignore[attr-defined]


async def test_streams_end_cleanly_when_the_router_stops() -> None:
    async with router_fleet(CATALOG, settings=FAST) as fleet:
        router = await start_router(fleet.catalog)
        stream = await CurlStream.open(router.url + "/router/events")
        await stream.until(kind_is("snapshot"))
        await router.close()
        with pytest.raises(EOFError):
            await stream.until(lambda i: False, timeout=10)
        assert await asyncio.wait_for(stream.process.wait(), 10) == 0  # curl saw a complete (chunked) response


async def test_a_cold_load_is_an_event_a_window_figure_and_a_metric(tmp_path: Path) -> None:
    settings = {**FAST, "keep_warm": False, "cold_load_threshold": 0.05}
    async with router_fleet(CATALOG, settings=settings, emulator={"load_time": 0.2}) as fleet:
        stream = await CurlStream.open(fleet.url + "/router/events")
        try:
            assert await chat(fleet, QWEN) == 200
            cold = await stream.until(kind_is("cold_load"))
            assert cold.data["model"] == QWEN and cold.data["container"] == "q" and cold.data["load_seconds"] >= 0.2
            snapshot = await stream.until(lambda i: i.kind == "snapshot" and i.data["window"]["total"]["cold_loads"] > 0)
            assert snapshot.data["window"]["models"][QWEN]["cold_loads"] == 1
        finally:
            await stream.close()
        assert total(await metrics(fleet), P + "cold_loads_total", model=QWEN, container="q") == 1
