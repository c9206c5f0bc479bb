"""OLLAMA_* environment variables read the way Ollama reads them (1.1, 11)."""

from __future__ import annotations

import logging
import os
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 11434


def clean(value: str) -> str:
    """Env values are trimmed of whitespace and of surrounding quotes."""
    return value.strip().strip("\"'").strip()


def env(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None:
        return None
    value = clean(value)
    return value or None


def env_int(name: str, default: int) -> int:
    value = env(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        log.warning("invalid %s=%r, using %d", name, value, default)
        return default


def env_bool(name: str) -> bool:
    """Go's strconv.ParseBool as Ollama reads a flag: unset is false, junk is true."""
    value = env(name)
    return value is not None and value not in ("0", "f", "F", "FALSE", "false", "False")


def parse_ollama_host(value: str | None) -> tuple[str, int]:
    """OLLAMA_HOST -> (bind host, port); "" host means all interfaces.

    No scheme: port 11434. `http://` defaults to 80 and `https://` to 443 when
    no port is given. A bad port falls back to the default with a warning.
    """
    if value is None:
        return DEFAULT_HOST, DEFAULT_PORT
    text = clean(value)
    if not text:
        return DEFAULT_HOST, DEFAULT_PORT
    default_port = DEFAULT_PORT
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        default_port = {"http": 80, "https": 443}.get(scheme, DEFAULT_PORT)
    else:
        text = "http://" + text
    parts = urlsplit(text)
    netloc = parts.netloc
    if netloc.startswith("["):
        end = netloc.find("]")
        host, rest = netloc[1:end], netloc[end + 1 :]
        port_text = rest[1:] if rest.startswith(":") else ""
    elif ":" in netloc:
        host, port_text = netloc.rsplit(":", 1)
    else:
        host, port_text = netloc, ""
    port = default_port
    if port_text:
        try:
            port = int(port_text)
            if not 0 <= port <= 65535:
                raise ValueError(port_text)
        except ValueError:
            log.warning("invalid port in OLLAMA_HOST=%r, using %d", value, default_port)
            port = default_port
    return host, port
