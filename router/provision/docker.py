"""Reconcile Docker with the catalog: create, recreate, start, prune; and remove.

Only containers labelled with this project are ever touched. Work on distinct
containers runs in parallel threads (docker-py is synchronous); one container's
failure is recorded in its outcome and never stops the others.
"""

from __future__ import annotations

import errno
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container as DockerContainer

from router.provision.errors import ProvisionError, explain
from router.provision.spec import (
    LABEL_CONTAINER,
    LABEL_PROJECT,
    LABEL_SPEC_HASH,
    MODEL_DIR,
    ContainerSpec,
)

Notify = Callable[[str, str], None]  # (container name, what happened)


@dataclass(slots=True)
class Outcome:
    name: str  # the catalog's container name
    action: str  # created, recreated, started, unchanged, removed, kept, failed
    ok: bool = True
    message: str = ""
    docker_name: str = ""
    host: str = ""  # the catalog's host it is on


def owned_containers(client: docker.DockerClient, project: str) -> dict[str, DockerContainer]:
    """This project's containers by catalog name (containers without our labels never appear)."""
    found = client.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={project}"})
    return {c.labels.get(LABEL_CONTAINER) or c.name or c.id or "?": c for c in found}


# ---------------------------------------------------------------------------
# Pieces of one container's reconcile


def ensure_image(client: docker.DockerClient, image: str, notify: Notify = lambda name, what: None) -> None:
    """Use the local image, else pull it; ProvisionError when neither works."""
    try:
        client.images.get(image)
        return
    except ImageNotFound:
        pass
    except APIError as exc:
        raise ProvisionError(explain(exc, image=image)) from None
    notify(image, "not here; pulling the image (Ollama's is about 2 GB) ...")
    try:
        client.images.pull(image)
    except DockerException as exc:
        raise ProvisionError(f"image {image} is not available locally and could not be pulled: {explain(exc)}") from None


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Could our container bind this port? (SO_REUSEADDR: a TIME_WAIT socket is no conflict.)

    An address this machine does not have belongs to another host: nothing to
    tell from here, so the port counts as free and that host's engine decides.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            if exc.errno == errno.EADDRNOTAVAIL:
                return True
            raise
    return True


def _check_port(spec: ContainerSpec) -> None:
    port = spec.listen_port if spec.uses_host_network else spec.port
    # Every interface of a host known by name only: which machine that is, this one cannot tell.
    if port is None or spec.bind == "0.0.0.0":
        return
    if not port_free(port, spec.bind):
        raise ProvisionError(
            f"port {port} is already in use at {spec.bind} (another process or container listens there); "
            f"free it or change the catalog's port for '{spec.name}'"
        )


def _remove(container: DockerContainer) -> None:
    try:
        container.remove(force=True)
    except NotFound:
        pass


def _last_log_lines(container: DockerContainer, lines: int = 3) -> str:
    try:
        text = container.logs(tail=lines).decode("utf-8", "replace").strip()
    except DockerException:
        return ""
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


def answers(url: str, timeout: float = 1.0) -> bool:
    """Does an Ollama answer `GET /` there?"""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_ready(container: DockerContainer, spec: ContainerSpec, timeout: float) -> None:
    """Until its Ollama answers on its URL; fail early when the container stops or restarts."""
    deadline = time.monotonic() + timeout
    while True:
        if answers(spec.url):
            return
        container.reload()
        state = container.attrs.get("State", {})
        if state.get("Status") in ("exited", "dead") or state.get("Restarting"):
            logs = _last_log_lines(container)
            raise ProvisionError(
                f"container stopped (exit code {state.get('ExitCode')})" + (f": {logs}" if logs else "")
            )
        if time.monotonic() >= deadline:
            raise ProvisionError(f"Ollama did not answer at {spec.url} within {timeout:g}s (container {state.get('Status')})")
        time.sleep(0.2)


def _create_and_start(client: docker.DockerClient, spec: ContainerSpec) -> DockerContainer:
    _check_port(spec)
    try:
        container = client.containers.create(**spec.create_kwargs())
    except DockerException as exc:
        raise ProvisionError(explain(exc, image=spec.image, gpus=spec.gpus)) from None
    _start(container, spec)
    return container


def _start(container: DockerContainer, spec: ContainerSpec) -> None:
    try:
        container.start()
    except DockerException as exc:
        raise ProvisionError(explain(exc, image=spec.image, gpus=spec.gpus)) from None


# ---------------------------------------------------------------------------
# The whole reconcile

# What the action column says when the action did not bring the container up.
_FAILED_ACTION = {"created": "create failed", "recreated": "recreate failed", "started": "start failed", "unchanged": "not ready"}


_MAKES_CONTAINER = ("created", "recreated")


def plan(spec: ContainerSpec, current: DockerContainer | None) -> str:
    """What `up` does to one container, named by what it will have done."""
    if current is None:
        return "created"
    if current.labels.get(LABEL_SPEC_HASH) != spec.spec_hash:
        return "recreated"
    if current.status != "running":
        return "started"
    return "unchanged"


@dataclass(slots=True)
class Reconciler:
    client: docker.DockerClient
    project: str
    ready_timeout: float = 120.0
    parallel: int = 8
    notify: Notify = lambda name, what: None

    def up(self, specs: list[ContainerSpec], *, prune: bool = False) -> list[Outcome]:
        existing = owned_containers(self.client, self.project)
        plans = {s.name: plan(s, existing.get(s.name)) for s in specs}
        # Images matter only where a container is made; a missing one fails just those.
        image_errors = self._ensure_images({s.image for s in specs if plans[s.name] in _MAKES_CONTAINER})
        with ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="provision") as pool:
            outcomes = list(pool.map(
                lambda s: self._one(s, existing.get(s.name), plans[s.name], image_errors.get(s.image)), specs
            ))
            wanted = {s.name for s in specs}
            leftovers = [(n, c) for n, c in existing.items() if n not in wanted]
            outcomes += list(pool.map(lambda item: self._leftover(*item, prune=prune), leftovers))
        return outcomes

    def _ensure_images(self, images: set[str]) -> dict[str, str]:
        def check(image: str) -> tuple[str, str | None]:
            try:
                ensure_image(self.client, image, self.notify)
                return image, None
            except ProvisionError as exc:
                return image, str(exc)

        with ThreadPoolExecutor(max_workers=max(1, min(len(images), 4))) as pool:
            return {image: error for image, error in pool.map(check, sorted(images)) if error}

    def _one(self, spec: ContainerSpec, current: DockerContainer | None, action: str, image_error: str | None) -> Outcome:
        outcome = Outcome(spec.name, action, docker_name=spec.docker_name)
        try:
            if image_error and action in _MAKES_CONTAINER:
                raise ProvisionError(image_error)  # before removing anything: the old one keeps running
            container = self._converge(spec, current, action)
            self.notify(spec.name, f"{action}; waiting for Ollama at {spec.url}")
            wait_ready(container, spec, self.ready_timeout)
            self.notify(spec.name, "ready")
        except (ProvisionError, DockerException) as exc:
            message = str(exc) if isinstance(exc, ProvisionError) else explain(exc, image=spec.image, gpus=spec.gpus)
            outcome.ok, outcome.message = False, message
            outcome.action = _FAILED_ACTION.get(action, action)
            self.notify(spec.name, f"failed: {message}")
        return outcome

    def _converge(self, spec: ContainerSpec, current: DockerContainer | None, action: str) -> DockerContainer:
        if action == "created":
            self._refuse_foreign_name(spec)
            return _create_and_start(self.client, spec)
        assert current is not None  # plan() says so
        if action == "recreated":
            _remove(current)
            return _create_and_start(self.client, spec)
        if action == "started":
            _check_port(spec)
            _start(current, spec)
        return current

    def _refuse_foreign_name(self, spec: ContainerSpec) -> None:
        try:
            other = self.client.containers.get(spec.docker_name)
        except NotFound:
            return
        raise ProvisionError(
            f"a container named {spec.docker_name} exists and is not this catalog's "
            f"(project label {other.labels.get(LABEL_PROJECT)!r}); it is left alone: "
            "rename or remove it, or use another --project"
        )

    def _leftover(self, name: str, container: DockerContainer, *, prune: bool) -> Outcome:
        if not prune:
            note = "no longer in the catalog; `up --prune` removes it"
            return Outcome(name, "kept", message=note, docker_name=container.name or "")
        try:
            _remove(container)
        except DockerException as exc:
            return Outcome(name, "failed", ok=False, message=explain(exc), docker_name=container.name or "")
        self.notify(name, "removed (no longer in the catalog)")
        return Outcome(name, "removed", docker_name=container.name or "")


def down(client: docker.DockerClient, project: str, *, volumes: bool = False) -> list[Outcome]:
    """Remove this project's containers; with `volumes`, the named volumes they kept models in."""
    containers = owned_containers(client, project)
    model_volumes = {
        m["Name"]
        for c in containers.values()
        for m in c.attrs.get("Mounts", [])
        if m.get("Type") == "volume" and m.get("Destination", "").rstrip("/") == MODEL_DIR
    }

    def remove(item: tuple[str, DockerContainer]) -> Outcome:
        name, container = item
        try:
            _remove(container)
        except DockerException as exc:
            return Outcome(name, "failed", ok=False, message=explain(exc), docker_name=container.name or "")
        return Outcome(name, "removed", docker_name=container.name or "")

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(remove, sorted(containers.items())))
    if volumes:
        for volume in sorted(model_volumes):
            outcomes.append(_remove_volume(client, volume))
    return outcomes


def _remove_volume(client: docker.DockerClient, name: str) -> Outcome:
    try:
        client.volumes.get(name).remove()
    except NotFound:
        return Outcome(f"volume {name}", "removed")
    except APIError as exc:
        return Outcome(f"volume {name}", "failed", ok=False, message=explain(exc))
    return Outcome(f"volume {name}", "removed")


def inspect(client: docker.DockerClient, project: str) -> dict[str, dict[str, Any]]:
    """`docker inspect` of this project's containers, by catalog name."""
    return {name: c.attrs for name, c in owned_containers(client, project).items()}
