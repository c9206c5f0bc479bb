"""`up`, `down`, `status` against a real Docker engine, the emulator standing in for Ollama."""

from __future__ import annotations

import json
import socket
import urllib.request
from typing import Any

import pytest

from router.cli import main
from tests.provision.conftest import (
    LABEL_PROJECT,
    TEST_IMAGE,
    CatalogFactory,
    ProvisionCatalog,
)

pytestmark = pytest.mark.docker


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def model_names(url: str, path: str) -> set[str]:
    return {m["name"] for m in get_json(url + path)["models"]}


def up(catalog: ProvisionCatalog, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(catalog.argv("up", "--timeout", "30", *extra))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def container(docker_client: Any, catalog: ProvisionCatalog, name: str) -> Any:
    return docker_client.containers.get(catalog.docker_name(name))


def test_up_creates_pulls_loads_and_a_second_up_changes_nothing(
    make_catalog: CatalogFactory, docker_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = make_catalog(
        {"chat-a": {}, "chat-b": {"num_parallel": 3, "env": {"OLLAMA_FLASH_ATTENTION": "1"}}},
        {"llama3.2:1b": ["chat-a", "chat-b"], "nomic-embed-text": ["chat-b"]},
    )
    code, output = up(catalog, capsys)
    assert code == 0, output
    assert "pulled llama3.2:1b on chat-a" in output
    assert "pulled nomic-embed-text:latest on chat-b" in output

    b = container(docker_client, catalog, "chat-b")
    assert b.status == "running"
    host = b.attrs["HostConfig"]
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert host["NetworkMode"] == "host"
    assert not host.get("DeviceRequests")  # no GPUs asked for
    env = dict(item.split("=", 1) for item in b.attrs["Config"]["Env"])
    assert env["OLLAMA_HOST"] == f"127.0.0.1:{catalog.ports['chat-b']}"
    assert env["OLLAMA_NUM_PARALLEL"] == "3"
    assert env["OLLAMA_KEEP_ALIVE"] == "10m"
    assert env["OLLAMA_FLASH_ATTENTION"] == "1"
    labels = b.labels
    assert labels[LABEL_PROJECT] == catalog.project
    assert labels["io.ollama-router.container"] == "chat-b"
    assert len(labels["io.ollama-router.spec-hash"]) == 16
    mounts = {m["Destination"]: m for m in b.attrs["Mounts"]}
    assert mounts["/root/.ollama"]["Type"] == "volume" and mounts["/root/.ollama"]["Name"] == catalog.volume
    assert b.attrs["Config"]["Healthcheck"]["Test"] == ["CMD", "ollama", "list"]

    # Pulled and loaded, as the containers' own Ollama API says.
    assert model_names(catalog.url("chat-a"), "/api/tags") == {"llama3.2:1b"}
    assert model_names(catalog.url("chat-b"), "/api/tags") == {"llama3.2:1b", "nomic-embed-text:latest"}
    assert model_names(catalog.url("chat-b"), "/api/ps") == {"llama3.2:1b", "nomic-embed-text:latest"}

    before = {n: (container(docker_client, catalog, n).id, container(docker_client, catalog, n).attrs["State"]["StartedAt"])
              for n in ("chat-a", "chat-b")}
    code, output = up(catalog, capsys)
    assert code == 0, output
    assert "pulled" not in output
    after = {n: (container(docker_client, catalog, n).id, container(docker_client, catalog, n).attrs["State"]["StartedAt"])
             for n in ("chat-a", "chat-b")}
    assert after == before
    assert output.count("unchanged") >= 2


def test_a_changed_spec_recreates_only_that_container_and_prune_removes_dropped_ones(
    make_catalog: CatalogFactory, docker_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    containers = {"one": {}, "two": {}, "three": {}}
    models = {"llama3.2:1b": ["one", "two", "three"]}
    catalog = make_catalog(containers, models)
    code, output = up(catalog, capsys, "--no-pull", "--no-preload")
    assert code == 0, output
    ids = {n: container(docker_client, catalog, n).id for n in containers}

    # `two` changes, `three` leaves the catalog.
    catalog = make_catalog({"one": {}, "two": {"num_parallel": 1}}, {"llama3.2:1b": ["one", "two"]})
    code, output = up(catalog, capsys, "--no-pull", "--no-preload")
    assert code == 0, output
    assert container(docker_client, catalog, "one").id == ids["one"]
    two = container(docker_client, catalog, "two")
    assert two.id != ids["two"]
    assert "OLLAMA_NUM_PARALLEL=1" in two.attrs["Config"]["Env"]
    assert container(docker_client, catalog, "three").id == ids["three"]  # kept without --prune
    assert "up --prune" in output

    code, output = up(catalog, capsys, "--no-pull", "--no-preload", "--prune")
    assert code == 0, output
    remaining = docker_client.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={catalog.project}"})
    assert {c.name for c in remaining} == {catalog.docker_name("one"), catalog.docker_name("two")}


def test_a_gpu_container_fails_clearly_while_the_others_come_up(
    make_catalog: CatalogFactory, docker_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = make_catalog(
        {"cpu": {}, "big": {"gpus": [2, 3]}},
        {"llama3.2:1b": ["cpu"], "qwen2.5:72b": ["big"]},
    )
    code, output = up(catalog, capsys)
    assert code == 1
    assert 'could not select device driver "nvidia"' in output
    assert "NVIDIA Container Toolkit" in output
    assert "Traceback" not in output

    big = container(docker_client, catalog, "big")
    requests = big.attrs["HostConfig"]["DeviceRequests"]
    assert requests == [{"Driver": "nvidia", "Count": 0, "DeviceIDs": ["2", "3"], "Capabilities": [["gpu"]], "Options": {}}]
    assert "CUDA_DEVICE_ORDER=PCI_BUS_ID" in big.attrs["Config"]["Env"]
    assert big.status == "created"

    assert container(docker_client, catalog, "cpu").status == "running"
    assert model_names(catalog.url("cpu"), "/api/ps") == {"llama3.2:1b"}


def test_each_failure_is_explained_and_does_not_stop_the_others(
    make_catalog: CatalogFactory, docker_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.provision.conftest import emulator_command

    catalog = make_catalog(
        {
            "good": {},
            "busy": {},
            "nopull": {"command": emulator_command("--no-pull")},
            "noimage": {"image": "ollama-router-test/missing:none"},
        },
        {"llama3.2:1b": ["good", "busy", "nopull", "noimage"]},
    )
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", catalog.ports["busy"]))
        squatter.listen()
        code, output = up(catalog, capsys)
    assert code == 1
    assert "Traceback" not in output
    assert f"port {catalog.ports['busy']} is already in use" in output
    assert "image ollama-router-test/missing:none is not available locally and could not be pulled" in output
    assert "create failed" in output
    assert "pull llama3.2:1b" in output and "file does not exist" in output
    assert container(docker_client, catalog, "good").status == "running"
    assert model_names(catalog.url("good"), "/api/ps") == {"llama3.2:1b"}


def test_down_removes_only_this_catalogs_containers(
    make_catalog: CatalogFactory, docker_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = make_catalog({"solo": {}}, {"llama3.2:1b": ["solo"]})
    code, output = up(catalog, capsys, "--no-pull", "--no-preload")
    assert code == 0, output
    # A container without our labels, and one of another project.
    strangers = [
        docker_client.containers.create(TEST_IMAGE, ["sleep", "60"], name=f"{catalog.project}-stranger", network_mode="none"),
        docker_client.containers.create(TEST_IMAGE, ["sleep", "60"], network_mode="none",
                                        labels={LABEL_PROJECT: f"{catalog.project}-other"}),
    ]
    try:
        assert main(catalog.argv("down")) == 0
        output = capsys.readouterr().out
        assert catalog.docker_name("solo") in output
        remaining = {c.id for c in docker_client.containers.list(all=True)}
        assert all(s.id in remaining for s in strangers)
        assert not docker_client.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={catalog.project}"})
        assert docker_client.volumes.get(catalog.volume)  # models stay without --volumes

        code, output = up(catalog, capsys, "--no-pull", "--no-preload")
        assert code == 0, output
        assert main(catalog.argv("down", "--volumes")) == 0
        assert f"volume {catalog.volume}" in capsys.readouterr().out
        assert catalog.volume not in {v.name for v in docker_client.volumes.list()}
    finally:
        for stranger in strangers:
            stranger.remove(force=True)


def test_status_shows_state_gpus_health_and_loaded_models(
    make_catalog: CatalogFactory, docker_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = make_catalog({"shown": {}, "gpu": {"gpus": [1]}}, {"llama3.2:1b": ["shown"], "qwen2.5:7b": ["gpu"]})
    up(catalog, capsys)
    assert main(catalog.argv("status")) == 0
    output = capsys.readouterr().out
    lines = {line.split("│")[1].strip(): line for line in output.splitlines() if line.count("│") > 2}
    assert {"shown", "gpu"} <= set(lines)
    assert "running" in lines["shown"] and "llama3.2:1b" in lines["shown"] and TEST_IMAGE in lines["shown"]
    assert "created" in lines["gpu"] and "│ 1 " in lines["gpu"]
    for column in ("container", "state", "GPUs", "image", "health", "loaded models", "uptime"):
        assert column in output


def test_a_container_that_is_not_ours_is_never_touched_even_with_our_name(
    make_catalog: CatalogFactory, docker_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = make_catalog({"taken": {}, "free": {}}, {"llama3.2:1b": ["taken", "free"]})
    stranger = docker_client.containers.create(TEST_IMAGE, ["sleep", "60"], name=catalog.docker_name("taken"),
                                               network_mode="none")
    try:
        code, output = up(catalog, capsys, "--no-pull", "--no-preload", "--prune")
        assert code == 1
        assert f"a container named {catalog.docker_name('taken')} exists and is not this catalog's" in output
        stranger.reload()
        assert stranger.status == "created" and LABEL_PROJECT not in stranger.labels
        assert container(docker_client, catalog, "free").status == "running"
    finally:
        stranger.remove(force=True)
