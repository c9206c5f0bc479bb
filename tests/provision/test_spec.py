"""What a catalog container becomes in Docker (no Docker needed)."""

from __future__ import annotations

from router.catalog.loader import parse_catalog
from router.provision.spec import (
    DEFAULT_MODEL_VOLUME,
    LABEL_PROJECT,
    LABEL_SPEC_HASH,
    catalog_specs,
    keep_alive_env,
    project_name,
)

CATALOG = """
version: 1
defaults: {keep_alive: 24h, num_parallel: 4}
containers:
  gpu-a: {gpus: [0, 2], port: 11501, max_loaded_models: 2, env: {OLLAMA_FLASH_ATTENTION: "1"}}
  bridged: {port: 11502, network: bridge, volumes: ["models:/root/.ollama"], keep_alive: -1}
  remote: {url: "http://10.0.0.9:11434"}
models:
  llama3.2: {containers: [gpu-a, bridged]}
  qwen2.5:7b: {containers: [remote]}
"""


def specs(text: str = CATALOG) -> dict:
    return {s.name: s for s in catalog_specs(parse_catalog(text, "cat.yaml").catalog, "proj")}


def test_only_managed_containers_get_a_docker_container_named_after_the_project() -> None:
    result = specs()
    assert set(result) == {"gpu-a", "bridged"}
    assert result["gpu-a"].docker_name == "proj-gpu-a"


def test_gpus_become_an_nvidia_device_request_in_pci_bus_order() -> None:
    spec = specs()["gpu-a"]
    kwargs = spec.create_kwargs()
    [request] = kwargs["device_requests"]
    assert request["Driver"] == "nvidia"
    assert request["DeviceIDs"] == ["0", "2"]
    assert request["Capabilities"] == [["gpu"]]
    assert spec.environment["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert "device_requests" not in specs()["bridged"].create_kwargs()


def test_ollama_settings_come_from_the_catalog() -> None:
    host_net, bridged = specs()["gpu-a"], specs()["bridged"]
    assert host_net.environment["OLLAMA_HOST"] == "127.0.0.1:11501"  # host network: the catalog's port, loopback
    assert host_net.environment["OLLAMA_NUM_PARALLEL"] == "4"
    assert host_net.environment["OLLAMA_KEEP_ALIVE"] == "24h"
    assert host_net.environment["OLLAMA_MAX_LOADED_MODELS"] == "2"
    assert host_net.environment["OLLAMA_FLASH_ATTENTION"] == "1"
    assert bridged.environment["OLLAMA_HOST"] == "0.0.0.0:11434"  # own namespace, published on loopback
    assert bridged.environment["OLLAMA_KEEP_ALIVE"] == "-1m"
    assert bridged.create_kwargs()["ports"] == {"11434/tcp": ("127.0.0.1", 11502)}
    assert bridged.create_kwargs()["network_mode"] == "bridge"
    assert "ports" not in host_net.create_kwargs()


def test_the_shared_model_volume_is_added_unless_the_catalog_mounts_one() -> None:
    assert f"{DEFAULT_MODEL_VOLUME}:/root/.ollama" in specs()["gpu-a"].volumes
    assert specs()["bridged"].volumes == ("models:/root/.ollama",)


def test_restart_policy_healthcheck_and_labels() -> None:
    kwargs = specs()["gpu-a"].create_kwargs()
    assert kwargs["restart_policy"] == {"Name": "unless-stopped"}
    assert kwargs["healthcheck"]["test"] == ["CMD", "ollama", "list"]
    assert kwargs["labels"][LABEL_PROJECT] == "proj"


def test_the_spec_hash_changes_with_the_spec_and_only_then() -> None:
    before = specs()["gpu-a"].labels[LABEL_SPEC_HASH]
    assert specs()["gpu-a"].labels[LABEL_SPEC_HASH] == before
    changed = specs(CATALOG.replace('OLLAMA_FLASH_ATTENTION: "1"', 'OLLAMA_FLASH_ATTENTION: "0"'))
    assert changed["gpu-a"].labels[LABEL_SPEC_HASH] != before
    assert changed["bridged"].labels[LABEL_SPEC_HASH] == specs()["bridged"].labels[LABEL_SPEC_HASH]


def test_keep_alive_and_project_names() -> None:
    assert keep_alive_env(300) == "300s"
    assert keep_alive_env("1h30m") == "1h30m"
    assert project_name("catalog/4gpu.yaml") == "4gpu"
    assert project_name("/x/My Catalog.yml") == "my-catalog"


PINNED = """
version: 1
containers:
  chat: {gpus: [0], port: 11501}
  open: {gpus: [1], port: 11502, env: {OLLAMA_NO_CLOUD: "0"}}
models:
  llama3.2: {containers: [chat, open], context_length: 16384}
  nomic-embed-text: {containers: [chat], capabilities: [embedding]}
  gpt-oss:120b-cloud: {containers: [open]}
"""


def test_managed_containers_run_without_cloud_and_with_their_models_window() -> None:
    chat, open_ = specs(PINNED)["chat"].environment, specs(PINNED)["open"].environment
    assert chat["OLLAMA_NO_CLOUD"] == "1"  # a cloud name never reaches ollama.com from here
    assert open_["OLLAMA_NO_CLOUD"] == "0"  # the catalog's env says otherwise: it wins
    assert chat["OLLAMA_CONTEXT_LENGTH"] == open_["OLLAMA_CONTEXT_LENGTH"] == "16384"
    assert "OLLAMA_CONTEXT_LENGTH" not in specs()["gpu-a"].environment  # nothing pinned: Ollama's default
