"""Docker's errors, said the way a user can act on them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from docker.errors import APIError, DockerException

if TYPE_CHECKING:
    from router.catalog.model import Host

NVIDIA_TOOLKIT_URL = "https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html"


class ProvisionError(Exception):
    """A failure with a message fit for the user (no traceback)."""


class DockerUnavailable(ProvisionError):
    pass


def docker_unavailable(exc: Exception, host: Host | None = None) -> DockerUnavailable:
    """Why an engine did not answer; `host`: a catalog host, None for the local engine."""
    if host is not None:
        return DockerUnavailable(
            f"cannot reach the Docker engine of host '{host.name}' at {host.docker} ({_reason(exc, local=False)}); "
            "check that it runs there and that this machine may reach it (network, tls files, ssh access)"
        )
    return DockerUnavailable(
        f"cannot reach the Docker engine ({_reason(exc)}).\n"
        "Start it (e.g. `sudo systemctl start docker`, or run `dockerd` as root), make sure you may use it "
        "(member of the `docker` group, or root), or point DOCKER_HOST at a running engine."
    )


def _reason(exc: Exception, local: bool = True) -> str:
    if isinstance(exc, APIError) and exc.explanation:
        return str(exc.explanation)
    text = str(exc)
    # docker-py wraps the socket error a few times; the innermost part is the useful one.
    if "Connection refused" in text or "ConnectionRefused" in text:
        return "connection refused"
    if "No such file or directory" in text or "FileNotFoundError" in text:
        return "no socket at DOCKER_HOST or /var/run/docker.sock" if local else "no such socket"
    if "Permission denied" in text or "PermissionError" in text:
        return "permission denied on the Docker socket"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "its TLS certificate does not verify against the host's tls.ca"
    if "timed out" in text.lower() or "ConnectTimeout" in text:
        return "timed out"
    return text


def explain(exc: Exception, *, image: str = "", gpus: tuple[int, ...] = ()) -> str:
    """One line (or two) for an error from creating or starting a container."""
    text = _reason(exc) if isinstance(exc, (DockerException, OSError)) else str(exc)
    if "could not select device driver" in text:
        gpu_list = ",".join(map(str, gpus)) or "?"
        return (
            f"GPU {gpu_list} requested but Docker has no NVIDIA runtime ({text}). "
            f"Install the NVIDIA Container Toolkit and restart Docker: {NVIDIA_TOOLKIT_URL}"
        )
    if "address already in use" in text or "port is already allocated" in text:
        return f"port already in use: {text}"
    if "No such image" in text or "pull access denied" in text or "manifest unknown" in text:
        return f"image {image} is not available locally and could not be pulled ({text})"
    return text
