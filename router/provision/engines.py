"""The Docker engines of a catalog's hosts: connect to each, run the same work on all
of them at once.

docker-py is blocking, so every host gets a thread. A host that cannot be
reached, or whose work fails with a Docker error, fails alone: its result
carries the reason and the other hosts are still worked on.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import docker
from docker.api.client import APIClient
from docker.errors import DockerException
from docker.tls import TLSConfig
from requests.exceptions import RequestException

from router.catalog.model import LOCAL, Host
from router.provision.errors import ProvisionError, docker_unavailable, explain

T = TypeVar("T")

# docker-py's HTTP timeout, per socket read: an image pull streams progress, so
# a long pull is fine while one that stalls (or a registry that never answers) ends.
API_TIMEOUT = 60
# How long a host may take to answer its first ping: an unreachable box must not
# hold the others' report for a minute.
PING_TIMEOUT = 10


class _APIClient(APIClient):  # type: ignore[misc]
    """docker-py's client, whose TLS settings win over REQUESTS_CA_BUNDLE.

    requests lets that environment variable replace a session's own CA file on
    every request, so a host's `tls.ca` would be ignored wherever it is set.
    """

    def merge_environment_settings(self, url: str, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        if verify is None:
            verify = self.verify
        return super().merge_environment_settings(url, proxies, stream, verify, cert)


class _DockerClient(docker.DockerClient):  # type: ignore[misc]
    def __init__(self, **kwargs: Any) -> None:  # as DockerClient.__init__, with the client above
        self.api = _APIClient(**kwargs)


def _tls_config(host: Host) -> TLSConfig | None:
    if host.tls is None:
        return None
    for kind, path in (("ca", host.tls.ca), ("cert", host.tls.cert), ("key", host.tls.key)):
        if path is not None and not os.path.isfile(path):
            raise ProvisionError(f"host '{host.name}': tls {kind} file {path} does not exist")
    client_cert = (host.tls.cert, host.tls.key) if host.tls.cert and host.tls.key else None
    # verify: against the host's CA when it names one, else the system's CAs; never off.
    return TLSConfig(client_cert=client_cert, ca_cert=host.tls.ca, verify=host.tls.ca or True)


def connect(host: Host = LOCAL, timeout: int = API_TIMEOUT, pool_size: int = 16) -> docker.DockerClient:
    """A client of the host's engine that has answered a ping, or DockerUnavailable saying why."""
    ssh = host.docker is not None and host.docker.startswith("ssh://")
    if ssh and shutil.which("ssh") is None:
        raise ProvisionError(f"host '{host.name}' is reached over ssh ({host.docker}): install the ssh client (openssh-client)")
    try:
        if host.docker is None:
            client = docker.from_env(timeout=PING_TIMEOUT, max_pool_size=pool_size)
        else:
            client = _DockerClient(
                base_url=host.docker,
                tls=_tls_config(host) or False,
                timeout=PING_TIMEOUT,
                max_pool_size=pool_size,
                use_ssh_client=ssh,  # the system's ssh: its config, keys and agent
            )
        client.ping()
    except (DockerException, RequestException, OSError) as exc:
        raise docker_unavailable(exc, None if host.docker is None else host) from None
    client.api.timeout = timeout
    return client


@dataclass(slots=True)
class HostResult(Generic[T]):
    host: Host
    value: T | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


Connect = Callable[[Host], docker.DockerClient]


def on_every_host(
    hosts: list[Host], work: Callable[[Host, docker.DockerClient], T], *, connect: Connect = connect
) -> list[HostResult[T]]:
    """Connect to every host, then run `work` on each reachable one, all at once; results in host order."""
    if not hosts:
        return []
    with ThreadPoolExecutor(max_workers=len(hosts), thread_name_prefix="host") as pool:
        clients = list(pool.map(lambda h: _attempt(h, lambda: connect(h)), hosts))
        try:
            shared = _shared_engines([(r.host, r.value) for r in clients if r.value is not None])
            for result in clients:
                if result.host.name in shared:
                    result.error = shared[result.host.name]

            def run(connected: HostResult[docker.DockerClient]) -> HostResult[T]:
                if connected.value is None or not connected.ok:
                    return HostResult(connected.host, error=connected.error)
                client = connected.value
                return _attempt(connected.host, lambda: work(connected.host, client))

            return list(pool.map(run, clients))
        finally:
            for result in clients:
                if result.value is not None:
                    result.value.close()


def _attempt(host: Host, call: Callable[[], T]) -> HostResult[T]:
    try:
        return HostResult(host, call())
    except ProvisionError as exc:
        return HostResult(host, error=str(exc))
    except (DockerException, RequestException) as exc:
        # docker-py lets a connection that breaks mid-call through as requests' own error
        return HostResult(host, error=f"host '{host.name}': Docker: {explain(exc)}")


def _describe(host: Host) -> str:
    return "the local engine (containers without host:)" if host.docker is None else f"host '{host.name}'"


def _shared_engines(clients: list[tuple[Host, docker.DockerClient]]) -> dict[str, str]:
    """Hosts that are one engine under two names, each with why it is refused.

    Each host reconciles every container of the project on its engine: two names
    for one engine would each take the other's containers for leftovers. An engine
    is known by its ID, name and data root together: engines before Docker 23 take
    their ID from /etc/docker/key.json, which machines cloned from one image share.
    """
    by_engine: dict[tuple[str, str, str], list[Host]] = {}
    for host, client in clients:
        try:
            info = client.info()
        except DockerException:
            continue  # its work reports the engine's trouble
        identity = (str(info.get("ID") or ""), str(info.get("Name") or ""), str(info.get("DockerRootDir") or ""))
        if identity[0]:
            by_engine.setdefault(identity, []).append(host)
    refused: dict[str, str] = {}
    for (engine, machine, _), hosts in by_engine.items():
        if len(hosts) > 1:
            for host in hosts:
                others = " and ".join(_describe(h) for h in hosts if h is not host)
                refused[host.name] = (
                    f"{_describe(host)} is the same Docker engine as {others} (engine {engine} on {machine}); "
                    "one engine takes one host name: put these containers on one of them"
                )
    return refused
