"""Fixtures for the provisioning tests against a real Docker engine.

No registry is reachable, so the test image is made here: a busybox-static
rootfs, `docker import`ed. Its containers run the project's emulator with this
machine's Python and the test venv, bind-mounted read-only at the same paths,
on host networking and loopback ports: `up` runs the emulator in place of
Ollama, which reads OLLAMA_HOST as Ollama does. A tiny `ollama` shell script in
the image answers the healthcheck (`ollama list`) with busybox wget.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tarfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness import free_port

REPO = Path(__file__).resolve().parents[2]
TEST_IMAGE = "ollama-router-test/emulator:latest"
BUSYBOX = Path("/bin/busybox")
LABEL_PROJECT = "io.ollama-router.project"
ROOTFS_LABEL = "io.ollama-router.test-rootfs"

OLLAMA_SHIM = """#!/bin/sh
# Stands in for the ollama CLI in healthchecks: succeeds when the server answers.
exec wget -q -O /dev/null "http://${OLLAMA_HOST:-127.0.0.1:11434}/"
"""


def _docker_client() -> Any:
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except DockerException as exc:
        return exc
    return client


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    client = _docker_client()
    if isinstance(client, Exception):
        pytest.skip(f"no Docker engine reachable ({client}); ./scripts/test starts one when run as root")
    yield client
    client.close()


def _is_static(path: Path) -> bool:
    """An ELF without a PT_INTERP program header needs no libc in the image."""
    data = path.read_bytes()
    return data[:4] == b"\x7fELF" and b"/lib64/ld-linux" not in data[:4096] and b"/lib/ld-" not in data[:4096]


def _rootfs_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:

        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)

        def add_file(name: str, data: bytes, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        def add_link(name: str, target: str) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)

        for directory in ("bin", "etc", "dev", "proc", "sys", "usr", "root", "root/.ollama", "var"):
            add_dir(directory)
        add_dir("tmp", 0o1777)
        add_file("bin/busybox", BUSYBOX.read_bytes())
        for applet in ("sh", "wget", "cat", "ls", "sleep"):
            add_link(f"bin/{applet}", "busybox")
        add_file("bin/ollama", OLLAMA_SHIM.encode())
        add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
        # The host Python's loader and libc come from the bind-mounted /usr.
        for lib in ("lib", "lib64"):
            host = Path("/") / lib
            if host.is_symlink():
                add_link(lib, os.readlink(host).lstrip("/"))
            else:
                add_dir(lib)
    return buffer.getvalue()


def ensure_test_image(client: Any) -> str:
    """The test image in this engine: imported unless an earlier session left the same one."""
    from docker.errors import ImageNotFound

    rootfs = _rootfs_tar()
    digest = hashlib.sha256(rootfs).hexdigest()[:16]
    try:
        if client.images.get(TEST_IMAGE).labels.get(ROOTFS_LABEL) == digest:
            return TEST_IMAGE  # made by an earlier session from the same files
    except ImageNotFound:
        pass
    client.api.import_image_from_data(
        rootfs, repository=TEST_IMAGE.split(":")[0], tag="latest", changes=[f"LABEL {ROOTFS_LABEL}={digest}"]
    )
    return TEST_IMAGE


@pytest.fixture(scope="session")
def emulator_image(docker_client: Any) -> str:
    """The test image, made once per session (and reused when it is already there)."""
    if not BUSYBOX.is_file() or not _is_static(BUSYBOX):
        pytest.skip("no static busybox at /bin/busybox (apt-get install busybox-static; ./scripts/test does it as root)")
    return ensure_test_image(docker_client)


@dataclass
class SecondEngine:
    """The second dockerd `./scripts/test` starts (scripts/docker-engine): another host."""

    unix: str  # unix:///tmp/.../docker.sock
    tcp: str  # tcp://127.0.0.1:PORT, TLS with a client certificate
    tls_dir: Path  # ca.pem, cert.pem, key.pem
    pid: int
    client: Any

    def stop(self, timeout: float = 60.0) -> None:
        """Stop its dockerd as a shutdown would (SIGTERM: its containers stop too), and wait until it is gone."""
        import signal
        import time

        os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while Path(f"/proc/{self.pid}").exists() and _state(self.pid) != "Z":
            assert time.monotonic() < deadline, f"dockerd {self.pid} still runs {timeout:g}s after SIGTERM"
            time.sleep(0.1)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"


def _missing(reason: str) -> None:
    """Under CI a missing set-up step fails the test; elsewhere it skips with the reason."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def second_engine(emulator_image: str) -> Iterator[SecondEngine]:
    """The second Docker engine, with the test image; its dockerd's PID, to stop it."""
    import docker

    names = ("DOCKER_ENGINE2_HOST", "DOCKER_ENGINE2_TCP", "DOCKER_ENGINE2_DIR", "DOCKER_ENGINE2_PID")
    found = {name: os.environ.get(name, "") for name in names}
    if not all(found.values()):
        _missing("no second Docker engine: ./scripts/test starts one as root (scripts/docker-engine, docker_engine_second_start)")
    client = docker.DockerClient(base_url=found["DOCKER_ENGINE2_HOST"], timeout=60)
    try:
        client.ping()
    except Exception as exc:
        _missing(f"the second Docker engine at {found['DOCKER_ENGINE2_HOST']} does not answer ({exc})")
    ensure_test_image(client)
    yield SecondEngine(found["DOCKER_ENGINE2_HOST"], found["DOCKER_ENGINE2_TCP"], Path(found["DOCKER_ENGINE2_DIR"]),
                       int(found["DOCKER_ENGINE2_PID"]), client)
    client.close()


def host_mounts() -> list[str]:
    """What the emulator needs from this machine, read-only at the same paths."""
    wanted = [Path("/usr"), Path(sys.base_prefix), Path(sys.prefix), REPO]
    for lib in ("/lib", "/lib64"):
        if Path(lib).is_dir() and not Path(lib).is_symlink():
            wanted.append(Path(lib))
    resolved = sorted({p.resolve() for p in wanted if p.exists()}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in resolved:
        if not any(path == k or k in path.parents for k in kept):
            kept.append(path)
    return [f"{p}:{p}:ro" for p in kept]


@dataclass
class ProvisionCatalog:
    path: Path
    project: str
    ports: dict[str, int]
    volume: str

    def argv(self, command: str, *extra: str) -> list[str]:
        return [command, str(self.path), "-p", self.project, *extra]

    def url(self, container: str) -> str:
        return f"http://127.0.0.1:{self.ports[container]}"

    def docker_name(self, container: str) -> str:
        return f"{self.project}-{container}"


CatalogFactory = Callable[..., ProvisionCatalog]


def emulator_command(*flags: str) -> list[str]:
    python = str(Path(sys.prefix) / "bin" / "python")
    return [python, "-m", "router.emulator", "--pull-time", "0.3", *flags]


def render_catalog(
    containers: dict[str, dict[str, Any]],
    models: dict[str, list[str]],
    ports: dict[str, int],
    volume: str,
    hosts: dict[str, dict[str, Any]] | None = None,
) -> str:
    """A catalog YAML whose containers run the emulator from the test image."""
    import yaml

    defaults = {
        "image": TEST_IMAGE,
        "command": emulator_command(),
        "keep_alive": "10m",
        "num_parallel": 2,
        "env": {"PYTHONDONTWRITEBYTECODE": "1"},
        "volumes": [*host_mounts(), f"{volume}:/root/.ollama"],
    }
    body = {
        "version": 1,
        "defaults": defaults,
        **({"hosts": hosts} if hosts else {}),
        "containers": {name: {"port": ports[name], **fields} for name, fields in containers.items()},
        "models": {tag: {"containers": names} for tag, names in models.items()},
    }
    return yaml.safe_dump(body, sort_keys=False)


@pytest.fixture
def make_catalog(tmp_path: Path, docker_client: Any, emulator_image: str) -> Iterator[CatalogFactory]:
    """Write catalogs with a project id and loopback ports of their own; remove what they made."""
    project = f"ort-{uuid.uuid4().hex[:10]}"
    volume = f"{project}-models"
    ports: dict[str, int] = {}

    def factory(
        containers: dict[str, dict[str, Any]], models: dict[str, list[str]], name: str = "catalog",
        hosts: dict[str, dict[str, Any]] | None = None,
    ) -> ProvisionCatalog:
        for container in containers:
            while container not in ports:
                port = free_port()  # free now, but the kernel may hand out the same one twice
                if port not in ports.values():
                    ports[container] = port
        path = tmp_path / f"{name}.yaml"
        path.write_text(render_catalog(containers, models, ports, volume, hosts))
        return ProvisionCatalog(path, project, dict(ports), volume)

    yield factory
    for container in docker_client.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={project}"}):
        container.remove(force=True)
    try:
        docker_client.volumes.get(volume).remove(force=True)
    except Exception:  # already gone (down --volumes), or never made
        pass


