"""Render the catalog as plain Kubernetes manifests, ready for `kubectl apply -k`.

Per managed container: a StatefulSet (with a PersistentVolumeClaim for the
models when the catalog gives `storage`) or a Deployment (models on an
emptyDir), requesting `nvidia.com/gpu` for its GPU count, probing Ollama, placed
by `node_selector` and `tolerations`; and a Service. The router: a Deployment
of `replicas` pods probed on /healthz and /readyz, its catalog in a ConfigMap
(the Compose render's router catalog, each container reached at its Service),
the keys file from a Secret the operator creates, a Service and a
PodDisruptionBudget; Redis for the replicas when there are several and the
catalog names none. A kustomization.yaml lists the files.

On Kubernetes the device plugin picks a pod's GPUs: the catalog's GPU indexes,
ports, `host`, `network` and `volumes` are Docker's business and not used here.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from router import __version__
from router.catalog.model import OLLAMA_PORT, Catalog, Container
from router.provision.compose import ROUTER_CATALOG_FILE, ROUTER_PORT, dump_yaml, render_router_catalog
from router.provision.spec import MODEL_DIR, ollama_env

GPU_RESOURCE = "nvidia.com/gpu"
ROUTER = "router"
ROUTER_CATALOG_MAP = "router-catalog"
REDIS = "router-redis"
REDIS_PORT = 6379
KEYS_SECRET = "router-keys"
KEYS_FILE = "keys.yaml"
CATALOG_DIR = "/etc/ollama-router/catalog"
KEYS_DIR = "/etc/ollama-router/keys"
ROUTER_UID = 10001  # the router image's user (Dockerfile)
REDIS_IMAGE = "redis:7-alpine"
ROUTER_IMAGE = f"ollama-router:{__version__}"  # as the Dockerfile builds it
KUSTOMIZATION = "kustomization.yaml"

PART_OF = {"app.kubernetes.io/part-of": "ollama-router", "app.kubernetes.io/managed-by": "ollama-router"}
ANNOTATION_CONTAINER = "ollama-router.io/container"
ANNOTATION_CATALOG_HASH = "ollama-router.io/catalog-sha256"
# StatefulSet pods are named <name>-0 and labelled with <name>-<10-character hash>:
# keep names short enough for both to stay valid labels (63 characters).
NAME_LIMIT = 52


@dataclass(frozen=True, slots=True)
class K8sOptions:
    router_image: str = ROUTER_IMAGE
    keys_secret: str | None = KEYS_SECRET  # None: an open router (no API keys)
    redis_image: str = REDIS_IMAGE


def workload_name(container: str) -> str:
    """A catalog container's Kubernetes name: `ollama-<name>`, lower case, DNS-safe.
    A name that had to change, or be cut, gets a hash of the original so two never meet."""
    base = re.sub(r"[^a-z0-9-]+", "-", container.lower()).strip("-")
    name = f"ollama-{base}" if base else "ollama"
    if base != container or len(name) > NAME_LIMIT:
        digest = hashlib.sha256(container.encode()).hexdigest()[:6]
        name = f"{name[: NAME_LIMIT - 7].rstrip('-')}-{digest}"
    return name


def _metadata(name: str, labels: dict[str, str], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": {**labels, **PART_OF}}
    if annotations:
        metadata["annotations"] = annotations
    return metadata


def _http_probe(path: str, port: str, period: int, failures: int, initial_delay: int = 0) -> dict[str, Any]:
    probe: dict[str, Any] = {"httpGet": {"path": path, "port": port}}
    if initial_delay:
        probe["initialDelaySeconds"] = initial_delay
    return {**probe, "periodSeconds": period, "timeoutSeconds": 5, "failureThreshold": failures}


def _service(name: str, selector: dict[str, str], port: int, port_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, selector),
        "spec": {"selector": selector, "ports": [{"name": port_name, "port": port, "targetPort": port_name}]},
    }


# ---------------------------------------------------------------------------
# Ollama


def ollama_selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "ollama", "app.kubernetes.io/instance": name}


def ollama_pod(container: Container) -> dict[str, Any]:
    main: dict[str, Any] = {"name": "ollama", "image": container.image}
    if container.command:
        main["args"] = list(container.command)  # Docker's command is the image's CMD: Kubernetes' args
    env = ollama_env(container, "0.0.0.0", OLLAMA_PORT)
    main["env"] = [{"name": k, "value": v} for k, v in env.items()]
    main["ports"] = [{"name": "http", "containerPort": OLLAMA_PORT}]
    if container.gpus:
        count = len(container.gpus)
        main["resources"] = {"requests": {GPU_RESOURCE: count}, "limits": {GPU_RESOURCE: count}}
    # Ollama answers `/` as soon as it listens; a model loading does not block either path.
    main["readinessProbe"] = _http_probe("/", "http", period=5, failures=3)
    main["livenessProbe"] = _http_probe("/api/version", "http", period=10, failures=6, initial_delay=10)
    main["volumeMounts"] = [{"name": "models", "mountPath": MODEL_DIR}]
    pod: dict[str, Any] = {"containers": [main]}
    if container.node_selector:
        pod["nodeSelector"] = dict(container.node_selector)
    if container.tolerations:
        pod["tolerations"] = [
            {k: v for k, v in (("key", t.key), ("operator", t.operator), ("value", t.value), ("effect", t.effect)) if v is not None}
            for t in container.tolerations
        ]
    return pod


def ollama_objects(container: Container) -> list[dict[str, Any]]:
    name = workload_name(container.name)
    selector = ollama_selector(name)
    labels = {**selector, "app.kubernetes.io/component": "model-server"}
    annotations = {ANNOTATION_CONTAINER: container.name}
    pod = ollama_pod(container)
    template = {"metadata": {"labels": {**labels, **PART_OF}, "annotations": annotations}, "spec": pod}
    spec: dict[str, Any] = {"replicas": 1, "selector": {"matchLabels": selector}}
    if container.storage:
        spec = {"serviceName": name, **spec, "template": template, "volumeClaimTemplates": [{
            "metadata": {"name": "models"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": container.storage}}},
        }]}
        kind = "StatefulSet"
    else:
        pod["volumes"] = [{"name": "models", "emptyDir": {}}]
        # A new pod needs the old one's GPUs: stop it first.
        spec = {**spec, "strategy": {"type": "Recreate"}, "template": template}
        kind = "Deployment"
    workload = {"apiVersion": "apps/v1", "kind": kind, "metadata": _metadata(name, labels, annotations), "spec": spec}
    return [workload, _service(name, selector, OLLAMA_PORT, "http")]


# ---------------------------------------------------------------------------
# The router


def router_selector() -> dict[str, str]:
    return {"app.kubernetes.io/name": "ollama-router", "app.kubernetes.io/instance": ROUTER}


def _bundled_redis(catalog: Catalog) -> bool:
    return int(catalog.router.get("replicas", 1)) > 1 and not catalog.router.get("redis_url")


def service_url(container: Container) -> str:
    return f"http://{workload_name(container.name)}:{OLLAMA_PORT}"


def router_catalog_text(catalog: Catalog, header: str) -> str:
    """The catalog the router pods read: containers at their Services, the bundled Redis named."""
    extra = {"redis_url": f"redis://{REDIS}:{REDIS_PORT}/0"} if _bundled_redis(catalog) else None
    return dump_yaml(render_router_catalog(catalog, service_url, extra), header)


def router_objects(catalog: Catalog, options: K8sOptions, catalog_text: str) -> list[dict[str, Any]]:
    selector = router_selector()
    labels = {**selector, "app.kubernetes.io/component": "router"}
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(ROUTER_CATALOG_MAP, labels),
        "data": {ROUTER_CATALOG_FILE: catalog_text},
    }
    args = ["serve", f"{CATALOG_DIR}/{ROUTER_CATALOG_FILE}", "--host", "0.0.0.0"]
    mounts = [{"name": "catalog", "mountPath": CATALOG_DIR, "readOnly": True}]
    volumes: list[dict[str, Any]] = [{"name": "catalog", "configMap": {"name": ROUTER_CATALOG_MAP}}]
    if options.keys_secret:
        args += ["--api-keys", f"{KEYS_DIR}/{KEYS_FILE}"]
        mounts.append({"name": "keys", "mountPath": KEYS_DIR, "readOnly": True})
        # Group-readable for the router's group (fsGroup); not optional: no keys, no open router.
        volumes.append({"name": "keys", "secret": {"secretName": options.keys_secret, "defaultMode": 0o440}})
    router = {
        "name": "router",
        "image": options.router_image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "ports": [{"name": "http", "containerPort": ROUTER_PORT}],
        # Ready once every model has a container and the preload is done; alive while the process answers.
        "readinessProbe": _http_probe("/readyz", "http", period=5, failures=2),
        "livenessProbe": _http_probe("/healthz", "http", period=10, failures=3, initial_delay=5),
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": mounts,
    }
    # A changed catalog changes the pod template, so `kubectl apply` rolls the router.
    digest = hashlib.sha256(catalog_text.encode()).hexdigest()
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(ROUTER, labels),
        "spec": {
            "replicas": int(catalog.router.get("replicas", 1)),
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": {**labels, **PART_OF}, "annotations": {ANNOTATION_CATALOG_HASH: digest}},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": ROUTER_UID, "runAsGroup": ROUTER_UID, "fsGroup": ROUTER_UID},
                    "containers": [router],
                    "volumes": volumes,
                },
            },
        },
    }
    # One router pod at a time may be evicted (a drain), never all of them at once.
    budget = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(ROUTER, labels),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
    }
    return [config_map, deployment, _service(ROUTER, selector, ROUTER_PORT, "http"), budget]


def redis_objects(options: K8sOptions) -> list[dict[str, Any]]:
    selector = {"app.kubernetes.io/name": "redis", "app.kubernetes.io/instance": REDIS}
    labels = {**selector, "app.kubernetes.io/component": "router-state"}
    redis = {
        "name": "redis",
        "image": options.redis_image,
        # Shared limits and leases only: nothing worth writing to disk.
        "args": ["--save", "", "--appendonly", "no"],
        "ports": [{"name": "redis", "containerPort": REDIS_PORT}],
        "readinessProbe": {"exec": {"command": ["redis-cli", "ping"]}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(REDIS, labels),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": {**labels, **PART_OF}}, "spec": {"containers": [redis]}},
        },
    }
    return [deployment, _service(REDIS, selector, REDIS_PORT, "redis")]


# ---------------------------------------------------------------------------


def render_k8s(catalog: Catalog, options: K8sOptions, header: str = "") -> dict[str, list[dict[str, Any]]]:
    """File name -> its objects, kustomization.yaml last."""
    files: dict[str, list[dict[str, Any]]] = {}
    for container in catalog.containers.values():
        if container.managed:
            files[f"{workload_name(container.name)}.yaml"] = ollama_objects(container)
    files["router.yaml"] = router_objects(catalog, options, router_catalog_text(catalog, header))
    if _bundled_redis(catalog):
        files["redis.yaml"] = redis_objects(options)
    files[KUSTOMIZATION] = [{
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(files),
    }]
    return files


def write_k8s(catalog: Catalog, out_dir: Path, source_label: str, options: K8sOptions) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    header = f"# Rendered by `ollama-router k8s {source_label}`: edit the catalog and render again.\n"
    written = []
    for name, objects in render_k8s(catalog, options, header).items():
        path = out_dir / name
        path.write_text(header + "---\n".join(dump_yaml(o) for o in objects), encoding="utf-8")
        written.append(path)
    return written

