"""One catalog, two real Docker engines: the shared dockerd on the default socket
(host box1, its containers at 127.0.0.1) and the second dockerd ./scripts/test
starts (host box2, reached over tcp:// with TLS client certificates, its
containers at 127.0.0.2). The emulator stands in for Ollama, as in test_up_docker.

The last test stops the second engine: it runs after the others in this file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from router.catalog.loader import load_catalog
from router.cli import main
from tests.harness import free_port
from tests.provision.conftest import LABEL_PROJECT, CatalogFactory, ProvisionCatalog, SecondEngine

pytestmark = pytest.mark.docker

LABEL_HOST = "io.ollama-router.host"
BOX2_ADDRESS = "127.0.0.2"  # another loopback address: where box2's Ollama servers listen


def hosts(engine: SecondEngine) -> dict[str, dict[str, Any]]:
    tls = {name: str(engine.tls_dir / f"{name}.pem") for name in ("ca", "cert", "key")}
    return {
        "box1": {"docker": os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock", "address": "127.0.0.1"},
        "box2": {"docker": engine.tcp, "address": BOX2_ADDRESS, "tls": tls},
    }


@pytest.fixture
def two_hosts(make_catalog: CatalogFactory, second_engine: SecondEngine) -> Iterator[CatalogFactory]:
    """make_catalog with both hosts declared; removes what the tests made on the second engine too."""
    made: list[ProvisionCatalog] = []

    def factory(containers: dict[str, dict[str, Any]], models: dict[str, list[str]]) -> ProvisionCatalog:
        catalog = make_catalog(containers, models, hosts=hosts(second_engine))
        made.append(catalog)
        return catalog

    yield factory
    if made and Path(f"/proc/{second_engine.pid}").exists():
        client = second_engine.client
        for container in client.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={made[0].project}"}):
            container.remove(force=True)
        for volume in client.volumes.list(filters={"name": made[0].volume}):
            volume.remove(force=True)


def run(catalog: ProvisionCatalog, capsys: pytest.CaptureFixture[str], command: str, *extra: str) -> tuple[int, str]:
    code = main(catalog.argv(command, *extra))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def urls(catalog: ProvisionCatalog) -> dict[str, str]:
    """Where the router reaches each container, as the catalog says."""
    return {name: c.url for name, c in load_catalog(catalog.path).catalog.containers.items()}


def loaded(url: str) -> set[str]:
    with urllib.request.urlopen(url + "/api/ps", timeout=5) as response:
        return {m["name"] for m in json.loads(response.read())["models"]}


def ours(client: Any, project: str) -> dict[str, Any]:
    found = client.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={project}"})
    return {c.labels["io.ollama-router.container"]: c for c in found}


def env_of(container: Any) -> dict[str, str]:
    return dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])


def identities(docker_client: Any, engine: SecondEngine, project: str) -> dict[str, tuple[str, str]]:
    both = {**ours(docker_client, project), **ours(engine.client, project)}
    return {name: (c.id, c.attrs["State"]["StartedAt"]) for name, c in both.items()}


def test_up_places_each_container_on_its_host_and_a_second_up_changes_nothing(
    two_hosts: CatalogFactory, docker_client: Any, second_engine: SecondEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()  # the same port on both hosts: each listens at its own address
    catalog = two_hosts(
        {
            "chat-1": {"host": "box1", "port": port},
            "embed-1": {"host": "box1", "num_parallel": 3},
            "chat-2": {"host": "box2", "port": port, "gpus": [0], "env": {"OLLAMA_FLASH_ATTENTION": "1"}},
            "big-2": {"host": "box2", "gpus": [1, 2]},
        },
        {"llama3.2:1b": ["chat-1", "chat-2"], "nomic-embed-text": ["embed-1"], "qwen2.5:7b": ["big-2"]},
    )
    code, output = run(catalog, capsys, "up", "--timeout", "60")
    assert code == 0, output
    address = urls(catalog)
    assert address["chat-1"] == f"http://127.0.0.1:{port}" and address["chat-2"] == f"http://{BOX2_ADDRESS}:{port}"

    on_box1, on_box2 = ours(docker_client, catalog.project), ours(second_engine.client, catalog.project)
    assert set(on_box1) == {"chat-1", "embed-1"} and set(on_box2) == {"chat-2", "big-2"}
    assert {c.labels[LABEL_HOST] for c in on_box1.values()} == {"box1"}
    assert {c.labels[LABEL_HOST] for c in on_box2.values()} == {"box2"}
    assert all(c.status == "running" for c in [*on_box1.values(), *on_box2.values()])

    chat2 = on_box2["chat-2"]
    assert chat2.attrs["HostConfig"]["DeviceRequests"] == [
        {"Driver": "nvidia", "Count": 0, "DeviceIDs": ["0"], "Capabilities": [["gpu"]], "Options": {}}
    ]
    assert on_box2["big-2"].attrs["HostConfig"]["DeviceRequests"][0]["DeviceIDs"] == ["1", "2"]
    assert not on_box1["chat-1"].attrs["HostConfig"].get("DeviceRequests")
    env = env_of(chat2)
    assert env["OLLAMA_HOST"] == f"{BOX2_ADDRESS}:{port}"  # listens only where the router reaches it
    assert (env["OLLAMA_FLASH_ATTENTION"], env["CUDA_DEVICE_ORDER"], env["OLLAMA_NUM_PARALLEL"]) == ("1", "PCI_BUS_ID", "2")
    assert env_of(on_box1["embed-1"])["OLLAMA_NUM_PARALLEL"] == "3"
    assert env_of(on_box1["chat-1"])["OLLAMA_HOST"] == f"127.0.0.1:{port}"

    # Pulled and loaded on each host, as each container's own API says.
    assert loaded(address["chat-1"]) == {"llama3.2:1b"} and loaded(address["chat-2"]) == {"llama3.2:1b"}
    assert loaded(address["embed-1"]) == {"nomic-embed-text:latest"}
    assert loaded(address["big-2"]) == {"qwen2.5:7b"}
    assert "pulled llama3.2:1b on chat-2" in output

    before = identities(docker_client, second_engine, catalog.project)
    code, output = run(catalog, capsys, "up", "--timeout", "60")
    assert code == 0, output
    assert identities(docker_client, second_engine, catalog.project) == before
    assert "pulled" not in output
    # One progress line per host: a mark, the host, containers done, what happened.
    lines = {words[1]: line for line in output.splitlines() if len(words := line.split()) > 2 and words[1] in ("box1", "box2")}
    assert lines["box1"].split()[:5] == ["✓", "box1", "2/2", "2", "unchanged"], output
    assert lines["box2"].split()[:5] == ["✓", "box2", "2/2", "2", "unchanged"], output

    code, output = run(catalog, capsys, "status")
    assert code == 0, output
    rows = {line.split("│")[1].strip(): line for line in output.splitlines() if line.count("│") > 2}
    assert "running" in rows["chat-2"] and "box2" in rows["chat-2"] and "llama3.2:1b" in rows["chat-2"]
    assert "running" in rows["embed-1"] and "box1" in rows["embed-1"]


def test_two_names_for_one_engine_are_refused_before_anything_changes(
    make_catalog: CatalogFactory, docker_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Containers without host: run on the local engine; declaring it again under a name is one engine twice."""
    local = {"box1": {"docker": os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock", "address": "127.0.0.1"}}
    catalog = make_catalog({"named": {"host": "box1"}, "plain": {}}, {"llama3.2:1b": ["named", "plain"]}, hosts=local)
    code, output = run(catalog, capsys, "up", "--no-pull", "--no-preload")
    assert code == 1
    assert "host 'box1' is the same Docker engine as the local engine (containers without host:)" in output
    assert not ours(docker_client, catalog.project)


def test_a_host_whose_engine_stops_is_reported_while_the_other_is_reconciled_and_served(
    two_hosts: CatalogFactory, docker_client: Any, second_engine: SecondEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = two_hosts(
        {"chat-1": {"host": "box1"}, "chat-2": {"host": "box2"}, "qwen-2": {"host": "box2"}},
        {"llama3.2:1b": ["chat-1", "chat-2"], "qwen2.5:7b": ["qwen-2"]},
    )
    code, output = run(catalog, capsys, "up", "--timeout", "60")
    assert code == 0, output
    chat1 = ours(docker_client, catalog.project)["chat-1"]
    started = chat1.attrs["State"]["StartedAt"]

    second_engine.stop()  # box2 goes away, and its containers with it

    code, output = run(catalog, capsys, "up", "--timeout", "60")
    assert code == 1
    assert f"cannot reach the Docker engine of host 'box2' at {second_engine.tcp}" in output
    assert "Traceback" not in output
    assert any(line.split()[:3] == ["✗", "box2", "0/2"] for line in output.splitlines()), output
    rows = {line.split("│")[1].strip(): line for line in output.splitlines() if line.count("│") > 2}
    assert "unchanged" in rows["chat-1"] and "ok" in rows["chat-1"]
    assert "not reached" in rows["chat-2"] and "not reached" in rows["qwen-2"]
    chat1.reload()
    assert (chat1.status, chat1.attrs["State"]["StartedAt"]) == ("running", started)  # left as it was

    code, output = run(catalog, capsys, "status")
    assert code == 1
    rows = {line.split("│")[1].strip(): line for line in output.splitlines() if line.count("│") > 2}
    assert "running" in rows["chat-1"] and "llama3.2:1b" in rows["chat-1"]
    assert "host unreachable" in rows["chat-2"]
    assert "cannot reach the Docker engine of host 'box2'" in output

    # The router in front of the catalog serves what box1 holds; box2's model is unavailable.
    with Serving(catalog.path) as router:
        answer = wait_for_answer(router, "llama3.2:1b")
        assert answer.headers["X-Router-Container"] == "chat-1"
        assert json.loads(answer.read())["done"] is True
        status, _ = post(router, "qwen2.5:7b")
        assert status == 503

    code, output = run(catalog, capsys, "down")
    assert code == 1  # box2 could not be asked
    assert not ours(docker_client, catalog.project)  # box1's containers are gone all the same


def post(router: str, model: str) -> tuple[int, Any]:
    body = json.dumps({"model": model, "prompt": "hi", "stream": False}).encode()
    request = urllib.request.Request(router + "/api/generate", body, {"Content-Type": "application/json"})
    try:
        response = urllib.request.urlopen(request, timeout=10)
    except urllib.error.HTTPError as exc:
        return exc.code, exc
    return response.status, response


def wait_for_answer(router: str, model: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, response = post(router, model)
        except (urllib.error.URLError, OSError):
            status, response = 0, None
        if status == 200:
            return response
        assert time.monotonic() < deadline, f"no answer for {model} within {timeout:g}s (last status {status})"
        time.sleep(0.2)


class Serving:
    """`ollama-router serve CATALOG` as a child process on a free port; stopped by its PID."""

    def __init__(self, catalog: Path) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "router.cli", "serve", str(catalog), "--port", str(self.port), "--no-pull"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def __enter__(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
