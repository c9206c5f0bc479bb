"""What Docker container a catalog entry becomes: pure data, no Docker calls.

The spec hash goes into a label; `up` compares it with the running container's
to decide between leaving it alone and recreating it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from router.catalog.durations import format_duration, parse_keep_alive
from router.catalog.model import LOCAL_HOST, OLLAMA_PORT, Catalog, Container

LABEL_PROJECT = "io.ollama-router.project"
LABEL_CONTAINER = "io.ollama-router.container"
LABEL_SPEC_HASH = "io.ollama-router.spec-hash"
LABEL_GPUS = "io.ollama-router.gpus"
LABEL_CATALOG = "io.ollama-router.catalog"
LABEL_HOST = "io.ollama-router.host"

MODEL_DIR = "/root/.ollama"
# Every container of a catalog mounts this volume at MODEL_DIR unless the catalog
# mounts something there itself: each model is then downloaded once per box.
DEFAULT_MODEL_VOLUME = "ollama-models"

# `ollama list` asks the server (at OLLAMA_HOST) and fails when it does not answer;
# the ollama image has no curl or wget.
HEALTHCHECK_TEST = ["CMD", "ollama", "list"]
HEALTHCHECK = {"interval": 10.0, "timeout": 5.0, "retries": 3, "start_period": 30.0}

_NS = 1_000_000_000
_BUILTIN_NETWORK_MODES = ("host", "bridge", "none")


def project_name(catalog_path: str) -> str:
    """Default project (ownership label, name prefix): the catalog file's stem."""
    stem = Path(catalog_path).stem.lower()
    cleaned = re.sub(r"[^a-z0-9_.-]+", "-", stem).strip("-._")
    return cleaned or "ollama-router"


def valid_project(name: str) -> bool:
    return bool(re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name))


def keep_alive_env(value: str | int | float) -> str:
    """The catalog's keep_alive as OLLAMA_KEEP_ALIVE (a Go duration; numbers are seconds)."""
    if isinstance(value, str):
        return value.strip()
    return format_duration(parse_keep_alive(value))


def ollama_env(container: Container, listen_host: str, listen_port: int) -> dict[str, str]:
    """Ollama's settings from the catalog; the catalog's own `env` wins over them.

    Cloud is off (the router forwards cloud names only for catalog models, and a
    container should not reach ollama.com on its own); the window its models pin
    is the default of every load (requests through /v1 cannot name one)."""
    env = {
        "OLLAMA_HOST": f"{listen_host}:{listen_port}",
        "OLLAMA_NUM_PARALLEL": str(container.num_parallel),
        "OLLAMA_KEEP_ALIVE": keep_alive_env(container.keep_alive),
        "OLLAMA_NO_CLOUD": "1",
    }
    if container.context_length is not None:
        env["OLLAMA_CONTEXT_LENGTH"] = str(container.context_length)
    if container.max_loaded_models is not None:
        env["OLLAMA_MAX_LOADED_MODELS"] = str(container.max_loaded_models)
    if container.gpus:
        # Indexes in the catalog are nvidia-smi's, which are PCI bus order.
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    env.update(dict(container.env))
    return env


def model_volumes(volumes: tuple[str, ...] | list[str]) -> list[str]:
    """The catalog's volumes plus the shared model volume when nothing is mounted at MODEL_DIR."""
    result = list(volumes)
    if not any(_volume_target(v) == MODEL_DIR for v in result):
        result.append(f"{DEFAULT_MODEL_VOLUME}:{MODEL_DIR}")
    return result


def _volume_target(volume: str) -> str:
    parts = volume.split(":")
    return parts[1].rstrip("/") if len(parts) >= 2 else parts[0].rstrip("/")


def named_volume(volume: str) -> str | None:
    """`name:/path[:mode]` -> name; None for bind mounts (a path) and anonymous volumes."""
    parts = volume.split(":")
    if len(parts) < 2 or parts[0].startswith((".", "/", "~")):
        return None
    return parts[0]


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """One managed catalog container as Docker should run it."""

    project: str
    name: str  # the catalog's name
    docker_name: str
    image: str
    command: tuple[str, ...]
    environment: dict[str, str]
    volumes: tuple[str, ...]
    network: str
    port: int | None
    listen_port: int
    gpus: tuple[int, ...]
    url: str  # where the router reaches its Ollama
    host: str = LOCAL_HOST  # the catalog's host (Docker engine) it runs on
    bind: str = "127.0.0.1"  # the host's IP its Ollama listens or is published on
    catalog_path: str = ""
    healthcheck: dict[str, Any] = field(default_factory=dict)

    @property
    def uses_host_network(self) -> bool:
        return self.network == "host"

    def hashed_fields(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "command": list(self.command),
            "environment": dict(sorted(self.environment.items())),
            "volumes": list(self.volumes),
            "network": self.network,
            "port": self.port,
            "gpus": list(self.gpus),
            "healthcheck": self.healthcheck,
        }

    @property
    def spec_hash(self) -> str:
        text = json.dumps(self.hashed_fields(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def labels(self) -> dict[str, str]:
        return {
            LABEL_PROJECT: self.project,
            LABEL_CONTAINER: self.name,
            LABEL_SPEC_HASH: self.spec_hash,
            LABEL_GPUS: ",".join(map(str, self.gpus)),
            LABEL_CATALOG: self.catalog_path,
            LABEL_HOST: self.host,
        }

    def create_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for docker-py's `containers.create`."""
        from docker.types import (
            DeviceRequest,  # docker-py is only needed to run containers
        )

        kwargs: dict[str, Any] = {
            "image": self.image,
            "name": self.docker_name,
            "detach": True,
            "environment": self.environment,
            "volumes": list(self.volumes),
            "labels": self.labels,
            "restart_policy": {"Name": "unless-stopped"},
            "healthcheck": {
                "test": self.healthcheck["test"],
                **{k: int(self.healthcheck[k] * _NS) for k in ("interval", "timeout", "start_period")},
                "retries": self.healthcheck["retries"],
            },
        }
        if self.command:
            kwargs["command"] = list(self.command)
        if self.network in _BUILTIN_NETWORK_MODES or self.network.startswith("container:"):
            kwargs["network_mode"] = self.network
        else:
            kwargs["network"] = self.network
        if not self.uses_host_network and self.port is not None:
            # Published on the host's address only (loopback on the local engine): the router is the client.
            kwargs["ports"] = {f"{OLLAMA_PORT}/tcp": (self.bind, self.port)}
        if self.gpus:
            kwargs["device_requests"] = [
                DeviceRequest(driver="nvidia", device_ids=[str(g) for g in self.gpus], capabilities=[["gpu"]])
            ]
        return kwargs


def container_spec(catalog: Catalog, container: Container, project: str) -> ContainerSpec:
    # Host network: listen at the catalog's port on the host's address (loopback,
    # Ollama's own default, on the local engine), so nothing but the router reaches
    # an unauthenticated Ollama. Other networks: all interfaces of the container,
    # published on that address.
    host = catalog.host_of(container)
    listen_host = host.bind if container.network == "host" else "0.0.0.0"
    return ContainerSpec(
        project=project,
        name=container.name,
        docker_name=f"{project}-{container.name}",
        image=container.image,
        command=container.command,
        environment=ollama_env(container, listen_host, container.listen_port),
        volumes=tuple(model_volumes(container.volumes)),
        network=container.network,
        port=container.port,
        listen_port=container.listen_port,
        gpus=container.gpus,
        url=container.url,
        host=host.name,
        bind=host.bind,
        catalog_path=str(Path(catalog.path).resolve()) if catalog.path else "",
        healthcheck={"test": HEALTHCHECK_TEST, **HEALTHCHECK},
    )


def catalog_specs(catalog: Catalog, project: str) -> list[ContainerSpec]:
    return [container_spec(catalog, c, project) for c in catalog.containers.values() if c.managed]
