"""Render the catalog as a Docker Compose stack: the router plus one Ollama service per
managed container, GPUs reserved by device id.

Inside Compose the router reaches each Ollama by service name, not at the
catalog's loopback port, so a router catalog is rendered beside compose.yaml:
the same catalog in which every managed container becomes a remote one,
`url: http://<service>:11434`. Nobody runs `up` there; `serve` pulls and
preloads at start.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import yaml

from router import __version__
from router.catalog.model import OLLAMA_PORT, Catalog, Container
from router.provision.spec import (
    HEALTHCHECK,
    HEALTHCHECK_TEST,
    model_volumes,
    named_volume,
    ollama_env,
)

ROUTER_PORT = 8080
ROUTER_CATALOG = "/etc/ollama-router/catalog.yaml"
COMPOSE_FILE = "compose.yaml"
ROUTER_CATALOG_FILE = "catalog.yaml"
# What a remote (url) container may keep: these steer the router, the rest provisions.
_ROUTER_SIDE_KEYS = ("num_parallel", "keep_alive", "max_loaded_models")

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def service_names(catalog: Catalog) -> tuple[str, dict[str, str]]:
    """The router's service name and each managed container's (its catalog name)."""
    ollama = {c.name: c.name for c in catalog.containers.values() if c.managed}
    router = "router" if "router" not in ollama else "ollama-router"
    return router, ollama


def _seconds(value: float) -> str:
    return f"{int(value)}s"


def ollama_service(container: Container) -> dict[str, Any]:
    service: dict[str, Any] = {"image": container.image}
    if container.command:
        service["command"] = list(container.command)
    service["restart"] = "unless-stopped"
    # Its own network namespace: Ollama listens on its default port on every interface.
    service["environment"] = ollama_env(container, "0.0.0.0", OLLAMA_PORT)
    service["volumes"] = model_volumes(container.volumes)
    if container.port is not None:
        # As with `up`, the catalog's port on this machine's loopback, for curl and debugging.
        service["ports"] = [f"127.0.0.1:{container.port}:{OLLAMA_PORT}"]
    service["healthcheck"] = {
        "test": HEALTHCHECK_TEST,
        **{k: _seconds(HEALTHCHECK[k]) for k in ("interval", "timeout", "start_period")},
        "retries": HEALTHCHECK["retries"],
    }
    if container.gpus:
        service["deploy"] = {
            "resources": {
                "reservations": {
                    "devices": [
                        {"driver": "nvidia", "device_ids": [str(g) for g in container.gpus], "capabilities": ["gpu"]}
                    ]
                }
            }
        }
    return service


def router_service(ollama_services: list[str], build_context: str | None) -> dict[str, Any]:
    service: dict[str, Any] = {}
    if build_context is not None:
        service["build"] = {"context": build_context}
    service["image"] = f"ollama-router:{__version__}"
    service["command"] = ["serve", ROUTER_CATALOG, "--host", "0.0.0.0"]  # port: serve's default, 8080
    service["restart"] = "unless-stopped"
    service["ports"] = [f"{ROUTER_PORT}:{ROUTER_PORT}"]
    service["volumes"] = [f"./{ROUTER_CATALOG_FILE}:{ROUTER_CATALOG}:ro"]
    if ollama_services:
        service["depends_on"] = ollama_services
    return service


def build_context_for(out_dir: Path) -> str | None:
    """The project's Dockerfile directory relative to the output, when this is a checkout."""
    if not (PROJECT_ROOT / "Dockerfile").is_file():
        return None
    return os.path.relpath(PROJECT_ROOT, out_dir.resolve())


def render_compose(catalog: Catalog, build_context: str | None) -> dict[str, Any]:
    router_name, ollama_names = service_names(catalog)
    services: dict[str, Any] = {router_name: router_service(list(ollama_names.values()), build_context)}
    volumes: dict[str, Any] = {}
    for container in catalog.containers.values():
        if not container.managed:
            continue
        service = ollama_service(container)
        services[ollama_names[container.name]] = service
        for volume in service["volumes"]:
            name = named_volume(volume)
            if name:
                volumes[name] = {}
    document: dict[str, Any] = {"services": services}
    if volumes:
        document["volumes"] = volumes
    return document


def render_router_catalog(catalog: Catalog) -> dict[str, Any]:
    """The user's catalog with each managed container turned into `url: http://<service>:11434`."""
    raw = yaml.safe_load(Path(catalog.path).read_text(encoding="utf-8"))
    _, ollama_names = service_names(catalog)
    containers: dict[str, Any] = {}
    for name, spec in (raw.get("containers") or {}).items():
        if name in ollama_names:
            spec = spec or {}
            remote = {"url": f"http://{ollama_names[name]}:{OLLAMA_PORT}"}
            remote.update({k: spec[k] for k in _ROUTER_SIDE_KEYS if k in spec})
            containers[name] = remote
        else:
            containers[name] = spec
    raw["containers"] = containers
    # No container is provisioned from this copy: keep only what steers the router.
    defaults = raw.get("defaults") or {}
    raw["defaults"] = {k: v for k, v in defaults.items() if k in _ROUTER_SIDE_KEYS}
    if not raw["defaults"]:
        del raw["defaults"]
    return cast(dict[str, Any], raw)


class _PlainDumper(yaml.SafeDumper):
    """No `&id001` anchors for values that happen to be shared: people read this file."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _dump(document: dict[str, Any], header: str) -> str:
    body = yaml.dump(document, Dumper=_PlainDumper, sort_keys=False, default_flow_style=False, width=120)
    return header + body


def write_compose(catalog: Catalog, out_dir: Path, source_label: str) -> list[Path]:
    """Write compose.yaml and the router's catalog.yaml into out_dir; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    header = f"# Rendered by `ollama-router compose {source_label}`: edit the catalog and render again.\n"
    compose_path = out_dir / COMPOSE_FILE
    compose_path.write_text(_dump(render_compose(catalog, build_context_for(out_dir)), header), encoding="utf-8")
    catalog_path = out_dir / ROUTER_CATALOG_FILE
    catalog_header = header + "# The router's catalog inside the stack: Ollama services are reached by service name.\n"
    catalog_path.write_text(_dump(render_router_catalog(catalog), catalog_header), encoding="utf-8")
    return [compose_path, catalog_path]
