"""Keys operations: `keys list`, `keys revoke`, `keys rotate`, and a running router that
picks the keys file up when it changes (or on SIGHUP), without a restart or a dropped
request, keeping the old keys when the new file is bad."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson
import pytest_asyncio

from router.access.keys import read_keys_file
from router.cli import main as cli
from tests.access.support import CATALOG, LLAMA, MESSAGES, keys_add
from tests.harness import REPO, RouterFleet, free_port, router_fleet

# Nothing listens there: the router serves no model, but it starts, and keys still apply.
REMOTE_CATALOG = f"""
version: 1
containers:
  a: {{url: "http://127.0.0.1:9"}}
models:
  {LLAMA}: {{containers: [a]}}
"""


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli(list(args))
    return code, out.getvalue(), err.getvalue()


def test_list_shows_names_allowlists_and_limits_never_hashes(tmp_path: Path) -> None:
    file = tmp_path / "keys.yaml"
    keys_add(file, "team-a", "--models", "gpt-4o-mini", "--rate-limit", "60", "--burst", "5", "--max-concurrent", "3")
    keys_add(file, "ops", "--admin")
    code, out, err = run_cli("keys", "list", "--file", str(file))
    assert code == 0, err
    assert "team-a" in out and "gpt-4o-mini" in out and "60/min, burst 5" in out and "3" in out
    assert "ops" in out and "yes" in out
    for entry in read_keys_file(file).keys:
        assert entry.key_sha256 not in out and entry.key_sha256[:12] not in out


def test_revoke_and_rotate_change_only_the_named_key(tmp_path: Path) -> None:
    file = tmp_path / "keys.yaml"
    keys_add(file, "a", "--models", "gpt-4o-mini")
    keys_add(file, "b")
    before = {e.name: e for e in read_keys_file(file).keys}
    code, new_key, err = run_cli("keys", "rotate", "a", "--file", str(file))
    assert code == 0 and new_key.strip().startswith("olr-") and "shown only this once" in err
    after = {e.name: e for e in read_keys_file(file).keys}
    assert after["a"].key_sha256 != before["a"].key_sha256 and after["a"].models == ["gpt-4o-mini"]
    assert after["b"] == before["b"]
    assert oct(file.stat().st_mode & 0o777) == "0o600"
    assert run_cli("keys", "revoke", "a", "--file", str(file))[0] == 0
    assert [e.name for e in read_keys_file(file).keys] == ["b"]
    code, _, err = run_cli("keys", "revoke", "a", "--file", str(file))
    assert code == 1 and "no key named 'a'" in err
    code, _, err = run_cli("keys", "rotate", "nobody", "--file", str(file))
    assert code == 1 and "no key named 'nobody'" in err


@pytest_asyncio.fixture
async def keyed_router(tmp_path: Path) -> AsyncIterator[tuple[RouterFleet, Path, dict[str, str]]]:
    file = tmp_path / "keys.yaml"
    keys = {name: keys_add(file, name)[1].key for name in ("stays", "goes", "turns")}
    async with router_fleet(CATALOG, settings={"api_keys_file": str(file)}, emulator={"tokens_per_second": 40}) as fleet:
        yield fleet, file, keys


async def status_with(fleet: RouterFleet, key: str) -> int:
    body = orjson.dumps({"model": LLAMA, "messages": MESSAGES, "options": {"num_predict": 1}, "stream": False})
    async with fleet.session.post(fleet.url + "/api/chat", data=body, headers={"Authorization": f"Bearer {key}"}) as response:
        await response.read()
        return response.status


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.1)


async def test_a_revoked_key_is_refused_without_a_restart_and_running_streams_finish(keyed_router: tuple[RouterFleet, Path, dict[str, str]]) -> None:
    fleet, file, keys = keyed_router
    assert await status_with(fleet, keys["goes"]) == 200
    body = orjson.dumps({"model": LLAMA, "messages": MESSAGES, "options": {"num_predict": 80}})
    async with fleet.session.post(fleet.url + "/api/chat", data=body, headers={"Authorization": f"Bearer {keys['goes']}"}) as stream:
        assert stream.status == 200
        assert run_cli("keys", "revoke", "goes", "--file", str(file))[0] == 0

        async def refused() -> bool:
            return await status_with(fleet, keys["goes"]) == 401

        await eventually(refused)
        lines = (await stream.read()).splitlines()
    assert orjson.loads(lines[-1])["done"] is True  # the stream that started with the key ran to its end
    assert await status_with(fleet, keys["stays"]) == 200


async def test_a_rotated_key_replaces_the_old_one(keyed_router: tuple[RouterFleet, Path, dict[str, str]]) -> None:
    fleet, file, keys = keyed_router
    code, new_key, _ = run_cli("keys", "rotate", "turns", "--file", str(file))
    assert code == 0

    async def swapped() -> bool:
        return await status_with(fleet, new_key.strip()) == 200

    await eventually(swapped)
    assert await status_with(fleet, keys["turns"]) == 401


async def test_a_bad_keys_file_keeps_the_old_keys_and_says_what_is_wrong(keyed_router: tuple[RouterFleet, Path, dict[str, str]]) -> None:
    fleet, file, keys = keyed_router
    good = file.read_text()
    file.write_text(good + "- {name: broken, key_sha256: nothex}\n")

    async def reported() -> bool:
        return fleet.services.keys is not None and fleet.services.keys.last_error is not None

    await eventually(reported)
    error = fleet.services.keys.last_error if fleet.services.keys else None
    assert error is not None and error.startswith(f"{file}: key 'broken'") and "sha256" in error
    assert await status_with(fleet, keys["stays"]) == 200
    file.write_text(good)

    async def cleared() -> bool:
        return fleet.services.keys is not None and fleet.services.keys.last_error is None

    await eventually(cleared)


async def test_sighup_rereads_the_keys_file(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(REMOTE_CATALOG)
    file = tmp_path / "keys.yaml"
    keys_add(file, "first")
    port = free_port()
    log = tmp_path / "router.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "router.cli", "serve", str(catalog), "--port", str(port), "--api-keys", str(file), "--no-keep-warm", "--no-pull"],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        async with aiohttp.ClientSession() as session:
            async def listening() -> bool:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(listening, timeout=20)
        os.kill(process.pid, signal.SIGHUP)

        async def logged() -> bool:
            return b'"keys_reloaded"' in log.read_bytes()

        await eventually(logged)
        assert process.poll() is None  # a reload, not an exit
    finally:
        process.terminate()
        process.wait(10)
