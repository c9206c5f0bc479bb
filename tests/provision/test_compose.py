"""The Compose stack rendered from a catalog, checked by the validators users run."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from router.catalog.loader import load_catalog, parse_catalog
from router.cli import main
from router.provision.compose import ollama_service

REPO = Path(__file__).resolve().parents[2]
CATALOG = REPO / "catalog" / "4gpu.yaml"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compose")
    assert main(["compose", str(CATALOG), "-o", str(out)]) == 0
    return out


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_each_managed_container_is_a_service_reserving_its_gpus(rendered: Path) -> None:
    services = load(rendered / "compose.yaml")["services"]
    assert set(services) == {"router", "llama-a", "llama-b", "qwen-72b", "embed"}  # vision-remote runs elsewhere
    devices = services["qwen-72b"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "device_ids": ["2", "3"], "capabilities": ["gpu"]}]
    assert services["llama-b"]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["1"]
    qwen = services["qwen-72b"]
    assert qwen["environment"]["OLLAMA_HOST"] == "0.0.0.0:11434"
    assert qwen["environment"]["OLLAMA_NUM_PARALLEL"] == "2"
    assert qwen["environment"]["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert qwen["volumes"] == ["ollama-models:/root/.ollama"]
    assert qwen["healthcheck"]["test"] == ["CMD", "ollama", "list"]
    assert qwen["restart"] == "unless-stopped"
    assert "ollama-models" in load(rendered / "compose.yaml")["volumes"]


def test_the_router_service_serves_a_catalog_that_reaches_services_by_name(rendered: Path) -> None:
    router = load(rendered / "compose.yaml")["services"]["router"]
    assert router["command"][:2] == ["serve", "/etc/ollama-router/catalog.yaml"]
    assert "8080:8080" in router["ports"]
    assert "./catalog.yaml:/etc/ollama-router/catalog.yaml:ro" in router["volumes"]
    assert (rendered / router["build"]["context"] / "Dockerfile").is_file()

    catalog = load_catalog(rendered / "catalog.yaml").catalog  # what `validate` accepts
    assert catalog.containers["qwen-72b"].url == "http://qwen-72b:11434"
    assert not catalog.containers["qwen-72b"].managed
    assert catalog.containers["qwen-72b"].num_parallel == 2
    assert catalog.containers["vision-remote"].url == "http://10.1.2.3:11434"
    assert set(catalog.models) == set(load_catalog(CATALOG).catalog.models)


def test_the_committed_stack_matches_the_catalog(rendered: Path) -> None:
    for name in ("compose.yaml", "catalog.yaml"):
        committed = (REPO / "compose" / name).read_text()
        fresh = (rendered / name).read_text().replace(str(CATALOG), "catalog/4gpu.yaml")
        # Rendered elsewhere, the build context points back at this checkout.
        fresh = re.sub(r"(?m)^(\s+context: ).*$", r"\1..", fresh)
        assert committed == fresh, f"compose/{name} is stale: run ollama-router compose catalog/4gpu.yaml -o compose/"


def test_the_compose_spec_schema_accepts_it(rendered: Path) -> None:
    checker = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run([str(checker), "--builtin-schema", "vendor.compose-spec", str(rendered / "compose.yaml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_compose_config_accepts_it(rendered: Path) -> None:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose; ./scripts/test does it as root)")
    result = subprocess.run(["docker-compose", "-f", "compose.yaml", "config"], cwd=rendered,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert config["services"]["embed"]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["3"]


# A catalog with hosts: one Compose file per host, the router in compose.yaml.

HOSTS_CATALOG = REPO / "catalog" / "hosts.yaml"


@pytest.fixture(scope="module")
def per_host(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compose-hosts")
    # A container without host: runs on the local engine, which gets its own file.
    catalog = out / "hosts.yaml"
    catalog.write_text(HOSTS_CATALOG.read_text().replace("models:\n", "  plain: {port: 11600}\nmodels:\n", 1)
                       .replace("containers: [embed]", "containers: [embed, plain]"))
    assert main(["compose", str(catalog), "-o", str(out / "stack")]) == 0
    return out / "stack"


def test_each_host_gets_its_own_file_with_its_containers_at_its_address(per_host: Path) -> None:
    assert sorted(p.name for p in per_host.iterdir()) == [
        "catalog.yaml", "compose-box1.yaml", "compose-box2.yaml", "compose-box3.yaml", "compose-local.yaml", "compose.yaml"
    ]
    box1 = load(per_host / "compose-box1.yaml")["services"]
    assert set(box1) == {"llama-1", "embed"}
    assert box1["llama-1"]["ports"] == ["10.0.0.1:11501:11434"]
    assert box1["embed"]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["1"]
    box2 = load(per_host / "compose-box2.yaml")["services"]
    assert set(box2) == {"llama-2"} and box2["llama-2"]["ports"] == ["10.0.0.2:11501:11434"]  # same port, other box
    assert load(per_host / "compose-box3.yaml")["services"]["qwen-72b"]["environment"]["OLLAMA_NUM_PARALLEL"] == "2"
    assert load(per_host / "compose-local.yaml")["services"]["plain"]["ports"] == ["127.0.0.1:11600:11434"]


def test_the_router_alone_reaches_every_host_at_its_address(per_host: Path, capsys: pytest.CaptureFixture[str]) -> None:
    services = load(per_host / "compose.yaml")["services"]
    assert set(services) == {"router"}
    assert services["router"]["network_mode"] == "host"  # loopback and the hosts' addresses alike
    capsys.readouterr()
    assert main(["validate", str(per_host / "catalog.yaml")]) == 0, capsys.readouterr().err
    routed = load_catalog(per_host / "catalog.yaml").catalog
    assert {n: c.url for n, c in routed.containers.items()} == {
        "llama-1": "http://10.0.0.1:11501", "llama-2": "http://10.0.0.2:11501", "qwen-72b": "http://10.0.0.3:11502",
        "embed": "http://10.0.0.1:11504", "plain": "http://127.0.0.1:11600",
    }
    assert not routed.hosts and not any(c.managed for c in routed.containers.values())


@pytest.mark.parametrize("name", ["compose.yaml", "compose-box1.yaml", "compose-box2.yaml", "compose-box3.yaml", "compose-local.yaml"])
def test_every_per_host_file_passes_the_compose_validators(per_host: Path, name: str) -> None:
    checker = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run([str(checker), "--builtin-schema", "vendor.compose-spec", str(per_host / name)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose; ./scripts/test does it as root)")
    result = subprocess.run(["docker-compose", "-f", name, "config"], cwd=per_host, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
def test_compose_services_get_the_same_ollama_settings_as_up() -> None:
    catalog = parse_catalog(
        "version: 1\ncontainers:\n  a: {gpus: [0], port: 1}\nmodels:\n  llama3.2: {containers: [a], context_length: 8192}\n", "c.yaml"
    ).catalog
    environment = ollama_service(catalog.containers["a"])["environment"]
    assert environment["OLLAMA_NO_CLOUD"] == "1" and environment["OLLAMA_CONTEXT_LENGTH"] == "8192"
