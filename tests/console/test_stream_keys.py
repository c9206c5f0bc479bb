"""`/router/events` with a keys file: an admin key sees everything; another key
sees its own models and the containers serving them, and nothing of other
models or keys; no key or a wrong one is refused; a revoked key's stream ends."""

from __future__ import annotations

from pathlib import Path

import orjson

from router.cli import main as cli
from tests.console.sse import CurlStream, Item, kind_is
from tests.console.support import LLAMA, QWEN, KeyedFleet, chat, keyed_fleet, session_headers

OTHERS = (QWEN, "qwen-team", '"q"', "gpt-4o\"", "127.0.0.1")  # what the team key must never see


def text_of(items: list[Item]) -> str:
    return "\n".join(orjson.dumps(i.data).decode() for i in items if i.data is not None)


async def _fallback_and_rate_limit(keyed: KeyedFleet) -> None:
    """A team request; a llama request (the admin's) that qwen serves; the qwen key over its rate."""
    fleet = keyed.fleet
    assert await chat(fleet, LLAMA, headers=session_headers(keyed.keys["team"])) == 200
    for name in ("a", "b"):
        await fleet.backends[name].add_fault("busy", count=1)
    assert await chat(fleet, LLAMA, headers=session_headers(keyed.keys["ops"])) == 200
    statuses = [await chat(fleet, QWEN, headers=session_headers(keyed.keys["qwen-team"])) for _ in range(2)]
    assert statuses == [200, 429]


async def test_a_key_sees_its_own_models_and_an_admin_sees_everything(tmp_path: Path) -> None:
    async with keyed_fleet(tmp_path) as keyed:
        url = keyed.fleet.url + "/router/events"
        team = await CurlStream.open(url, keyed.bearer("team"))
        ops = await CurlStream.open(url, keyed.bearer("ops"))
        try:
            assert team.status == ops.status == 200
            await _fallback_and_rate_limit(keyed)
            await ops.until(kind_is("key_rate_limited"))
            await ops.until(kind_is("snapshot"))
            await team.until(kind_is("fallback_served"))
            snapshot = (await team.until(kind_is("snapshot"))).data
        finally:
            await team.close()
            await ops.close()

        # the team key: llama, its containers a and b, a fallback for llama (but not where it went)
        assert snapshot["viewer"] == {"key": "team", "admin": False}
        assert [m["model"] for m in snapshot["models"]] == [LLAMA]
        assert snapshot["models"][0]["fallback"] == []
        assert [c["name"] for c in snapshot["containers"]] == ["a", "b"]
        assert all("url" not in c and "last_error" not in c for c in snapshot["containers"])
        assert set(snapshot["window"]["models"]) == {LLAMA} and set(snapshot["window"]["containers"]) <= {"a", "b"}
        assert snapshot["window"]["total"]["requests"] == snapshot["window"]["models"][LLAMA]["requests"] == 1
        assert snapshot["window"]["models"][LLAMA]["fallbacks"] == 1
        assert "catalog" not in snapshot and "counters" not in snapshot and "keys_reload_error" not in snapshot
        served = team.events("fallback_served")
        assert len(served) == 1 and served[0].data["model"] == LLAMA and "to" not in served[0].data
        assert {e.data["container"] for e in team.events("container_up")} == {"a", "b"}
        assert not team.events("key_rate_limited")
        seen = text_of(team.items)
        assert not [other for other in OTHERS if other in seen], seen

        # the admin key: every model, container and event
        shown = ops.items[-1].data
        assert shown["viewer"] == {"key": "ops", "admin": True}
        assert {c["name"] for c in shown["containers"]} == {"a", "b", "q"} and len(shown["models"]) == 2
        assert ops.events("key_rate_limited")[0].data["key"] == "qwen-team"
        assert ops.events("fallback_served")[0].data["to"] == QWEN


async def test_no_key_and_a_wrong_key_are_refused(tmp_path: Path) -> None:
    async with keyed_fleet(tmp_path) as keyed:
        url = keyed.fleet.url + "/router/events"
        for headers in ((), ("Authorization: Bearer olr-not-a-key",)):
            refused = await CurlStream.open(url, *headers)
            assert refused.status == 401
            assert "API key" in orjson.loads(await refused.body())["error"]
        # the console's files need no key: they hold no data
        async with keyed.fleet.session.get(keyed.fleet.url + "/ui/") as page:
            assert page.status == 200


async def test_a_revoked_key_s_stream_ends(tmp_path: Path) -> None:
    async with keyed_fleet(tmp_path) as keyed:
        stream = await CurlStream.open(keyed.fleet.url + "/router/events", keyed.bearer("team"))
        try:
            await stream.until(kind_is("snapshot"))
            assert cli(["keys", "revoke", "team", "--file", str(keyed.file)]) == 0
            services = keyed.fleet.services
            assert services.keys is not None and services.keys.reload(services.runtime.catalog, services.events) is None
            revoked = await stream.until(kind_is("revoked"))
            assert "no longer valid" in revoked.data["error"]
            await stream.until(lambda i: False)
        except EOFError:
            pass
        finally:
            await stream.close()
        assert stream.ended
