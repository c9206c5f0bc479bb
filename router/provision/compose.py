"""Render the catalog as a Docker Compose stack: the router plus one Ollama service per
managed container, GPUs reserved by device id.

Inside Compose the router reaches each Ollama by service name, not at the
catalog's loopback port, so a router catalog is rendered beside compose.yaml:
the same catalog in which every managed container becomes a remote one,
`url: http://<service>:11434`. Nobody runs `up` there; `serve` pulls and
preloads at start.

A catalog with `hosts:` becomes one Compose file per host (compose-<host>.yaml,
its Ollama services published at the host's address and port) and compose.yaml
holding only the router, whose catalog reaches each container where `up` would
put it: http://<address>:<port>.
"""

from __future__ import annotations

import os
from collections.abc import Callable
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


def ollama_service(container: Container, bind: str = "127.0.0.1") -> dict[str, Any]:
    service: dict[str, Any] = {"image": container.image}
    if container.command:
        service["command"] = list(container.command)
    service["restart"] = "unless-stopped"
    # Its own network namespace: Ollama listens on its default port on every interface.
    service["environment"] = ollama_env(container, "0.0.0.0", OLLAMA_PORT)
    service["volumes"] = model_volumes(container.volumes)
    if container.port is not None:
        # As with `up`, the catalog's port at the host's address: loopback on one box,
        # for curl and debugging; the address the router reaches with several hosts.
        published = f"{container.port}:{OLLAMA_PORT}" if bind == "0.0.0.0" else f"{_compose_ip(bind)}:{container.port}:{OLLAMA_PORT}"
        service["ports"] = [published]
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


def _compose_ip(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def router_service(ollama_services: list[str], build_context: str | None, host_network: bool = False) -> dict[str, Any]:
    """`host_network`: the router reaches Ollama servers at host addresses, loopback among them."""
    service: dict[str, Any] = {}
    if build_context is not None:
        service["build"] = {"context": build_context}
    service["image"] = f"ollama-router:{__version__}"
    service["command"] = ["serve", ROUTER_CATALOG, "--host", "0.0.0.0"]  # port: serve's default, 8080
    service["restart"] = "unless-stopped"
    if host_network:
        service["network_mode"] = "host"
    else:
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


def _ollama_services(catalog: Catalog, containers: list[Container], bind: Callable[[Container], str]) -> dict[str, Any]:
    """`services` and `volumes` of a document holding these containers' Ollama services."""
    _, ollama_names = service_names(catalog)
    services: dict[str, Any] = {}
    volumes: dict[str, Any] = {}
    for container in containers:
        service = ollama_service(container, bind(container))
        services[ollama_names[container.name]] = service
        for volume in service["volumes"]:
            name = named_volume(volume)
            if name:
                volumes[name] = {}
    return {"services": services, **({"volumes": volumes} if volumes else {})}


def render_compose(catalog: Catalog, build_context: str | None) -> dict[str, Any]:
    """One stack: the router and every managed container (a catalog without hosts)."""
    router_name, ollama_names = service_names(catalog)
    managed = [c for c in catalog.containers.values() if c.managed]
    document = _ollama_services(catalog, managed, lambda c: "127.0.0.1")
    document["services"] = {router_name: router_service(list(ollama_names.values()), build_context), **document["services"]}
    return document


def render_host_compose(catalog: Catalog, host: str) -> dict[str, Any]:
    """One host's Ollama services, published at its address (a catalog with hosts)."""
    containers = [c for c in catalog.containers.values() if c.managed and c.host == host]
    return _ollama_services(catalog, containers, lambda c: catalog.host_of(c).bind)


def render_router_compose(catalog: Catalog, build_context: str | None) -> dict[str, Any]:
    """The router alone, for a catalog whose containers run on several hosts."""
    router_name, _ = service_names(catalog)
    return {"services": {router_name: router_service([], build_context, host_network=True)}}


def service_url(catalog: Catalog) -> Callable[[Container], str]:
    """Where a router inside the single-host stack reaches a managed container: its service."""
    _, ollama_names = service_names(catalog)
    return lambda container: f"http://{ollama_names[container.name]}:{OLLAMA_PORT}"


def render_router_catalog(
    catalog: Catalog, url_of: Callable[[Container], str], router: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The user's catalog with each managed container turned into a remote one at
    `url_of(container)`; `router` adds to (or replaces keys of) its `router:` section."""
    raw = yaml.safe_load(Path(catalog.path).read_text(encoding="utf-8"))
    containers: dict[str, Any] = {}
    for name, spec in (raw.get("containers") or {}).items():
        container = catalog.containers[name]
        if container.managed:
            spec = spec or {}
            remote = {"url": url_of(container)}
            remote.update({k: spec[k] for k in _ROUTER_SIDE_KEYS if k in spec})
            containers[name] = remote
        else:
            containers[name] = spec
    raw["containers"] = containers
    # No container is provisioned from this copy: keep only what steers the router.
    raw.pop("hosts", None)
    defaults = raw.get("defaults") or {}
    raw["defaults"] = {k: v for k, v in defaults.items() if k in _ROUTER_SIDE_KEYS}
    if not raw["defaults"]:
        del raw["defaults"]
    if router:
        raw["router"] = {**(raw.get("router") or {}), **router}
    return cast(dict[str, Any], raw)


class _PlainDumper(yaml.SafeDumper):
    """No `&id001` anchors for values that happen to be shared, and text of several
    lines as a block (a catalog inside a ConfigMap): people read these files."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_PlainDumper.add_representer(str, _str)


def dump_yaml(document: dict[str, Any], header: str = "") -> str:
    body = yaml.dump(document, Dumper=_PlainDumper, sort_keys=False, default_flow_style=False, width=120)
    return header + body


def host_compose_file(host: str) -> str:
    return f"compose-{host}.yaml"


def write_compose(catalog: Catalog, out_dir: Path, source_label: str) -> list[Path]:
    """Write compose.yaml (and compose-<host>.yaml per host) and the router's catalog.yaml
    into out_dir; return their paths, compose.yaml first."""
    out_dir.mkdir(parents=True, exist_ok=True)
    header = f"# Rendered by `ollama-router compose {source_label}`: edit the catalog and render again.\n"
    documents: dict[str, tuple[dict[str, Any], str]] = {}
    if catalog.hosts:
        documents[COMPOSE_FILE] = (render_router_compose(catalog, build_context_for(out_dir)),
                                   "# The router; each host's Ollama services are in compose-<host>.yaml.\n")
        for host in catalog.docker_hosts():
            document = render_host_compose(catalog, host.name)
            if document["services"]:
                documents[host_compose_file(host.name)] = (document, f"# Host {host.name}: run it there, on {host.docker or 'the local engine'}.\n")
        router_catalog = render_router_catalog(catalog, lambda c: c.url)
        note = "# The router's catalog: each Ollama is reached at its host's address.\n"
    else:
        documents[COMPOSE_FILE] = (render_compose(catalog, build_context_for(out_dir)), "")
        router_catalog = render_router_catalog(catalog, service_url(catalog))
        note = "# The router's catalog inside the stack: Ollama services are reached by service name.\n"
    documents[ROUTER_CATALOG_FILE] = (router_catalog, note)
    written = []
    for name, (document, note) in documents.items():
        path = out_dir / name
        path.write_text(dump_yaml(document, header + note), encoding="utf-8")
        written.append(path)
    return written
