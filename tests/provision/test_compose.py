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


def test_compose_services_get_the_same_ollama_settings_as_up() -> None:
    catalog = parse_catalog(
        "version: 1\ncontainers:\n  a: {gpus: [0], port: 1}\nmodels:\n  llama3.2: {containers: [a], context_length: 8192}\n", "c.yaml"
    ).catalog
    environment = ollama_service(catalog.containers["a"])["environment"]
    assert environment["OLLAMA_NO_CLOUD"] == "1" and environment["OLLAMA_CONTEXT_LENGTH"] == "8192"
