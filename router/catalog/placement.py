"""Where a catalog's containers run, checked the way the tools that read it will check it:
Docker engine URLs (as docker-py takes them), host addresses, Kubernetes label
keys and values, resource quantities, and Redis URLs.

Each check raises ValueError with a message for the user; model.py wraps them
into pydantic types, so a bad value is reported as `file:line: message`.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

DOCKER_SCHEMES = ("unix", "tcp", "ssh")
REDIS_SCHEMES = ("redis", "rediss", "unix")

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
# Kubernetes: a label value, or the name part of a label key (at most 63 characters).
_LABEL_NAME = re.compile(r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")
_DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?)*$")
# Kubernetes resource quantities for storage: 100Gi, 500G, 1.5Ti, 1e12.
_QUANTITY = re.compile(r"^(?:\d+(?:\.\d*)?|\.\d+)(?:Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|[eE]\d+)?$")


def is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def check_address(value: str) -> str:
    """A host name or IP address the router can reach, without scheme or port."""
    if is_ip(value) or _HOSTNAME.match(value):
        return value
    raise ValueError(f"address '{value}' must be a host name or an IP address (no scheme, port or path)")


def url_host(address: str) -> str:
    """The address as it goes into a URL (IPv6 in brackets)."""
    return f"[{address}]" if ":" in address else address


def check_docker_url(value: str) -> str:
    """A Docker engine address as docker-py's `base_url` takes it."""
    parts = urlsplit(value)
    schemes = ", ".join(f"{s}://" for s in DOCKER_SCHEMES)
    if parts.scheme not in DOCKER_SCHEMES:
        raise ValueError(f"docker '{value}' must start with {schemes} (e.g. unix:///var/run/docker.sock, tcp://box2:2376, ssh://ops@box3)")
    if parts.scheme == "unix":
        if not parts.path.startswith("/") or parts.netloc:
            raise ValueError(f"docker '{value}' must name a socket by its absolute path: unix:///path/to/docker.sock")
        return value
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"docker '{value}' has an invalid port") from None
    if not parts.hostname or (parts.path not in ("", "/")) or parts.query or parts.fragment:
        raise ValueError(f"docker '{value}' must be {parts.scheme}://host[:port] (e.g. tcp://box2:2376)")
    if port == 0:
        raise ValueError(f"docker '{value}' has an invalid port")
    return value


def check_label_key(value: str) -> str:
    """A Kubernetes label key: `[prefix/]name`, the prefix a DNS subdomain."""
    prefix, _, name = value.rpartition("/")
    if not _LABEL_NAME.match(name) or (prefix and not _DNS_SUBDOMAIN.match(prefix)) or value.startswith("/"):
        raise ValueError(
            f"'{value}' is not a Kubernetes label key ([prefix/]name: name at most 63 letters, digits, '-', '_', '.', "
            "starting and ending with a letter or digit; prefix a DNS subdomain)"
        )
    return value


def check_label_value(value: str) -> str:
    if value and not _LABEL_NAME.match(value):
        raise ValueError(
            f"'{value}' is not a Kubernetes label value (at most 63 letters, digits, '-', '_', '.', "
            "starting and ending with a letter or digit)"
        )
    return value


def check_quantity(value: str) -> str:
    if not _QUANTITY.match(value):
        raise ValueError(f"'{value}' is not a Kubernetes quantity (e.g. 200Gi, 500G, 1Ti)")
    return value


def check_redis_url(value: str) -> str:
    """redis://[user:password@]host[:port][/db], rediss:// (TLS), or unix:///path/to/redis.sock."""
    parts = urlsplit(value)
    if parts.scheme not in REDIS_SCHEMES:
        raise ValueError(f"redis_url must start with redis://, rediss:// or unix:// (got '{_redacted(value)}')")
    if parts.scheme == "unix":
        if not parts.path.startswith("/"):
            raise ValueError("redis_url unix:// must name a socket by its absolute path: unix:///path/to/redis.sock")
        return value
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"redis_url '{_redacted(value)}' has an invalid port") from None
    if not parts.hostname or port == 0:
        raise ValueError(f"redis_url '{_redacted(value)}' must name a host: redis://host[:port][/db]")
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise ValueError(f"redis_url '{_redacted(value)}': the path must be a database number (/0)")
    return value


def _redacted(url: str) -> str:
    """A URL fit for an error message: a password in it is not repeated."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
