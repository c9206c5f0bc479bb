"""API keys: the keys file (YAML, only sha256 hashes), and finding the key a request presents.

    keys:
      - name: team-a
        key_sha256: 3f1c...            # sha256 hex of the key; the key itself is never stored
        models: [llama3.2:3b, gpt-4o-mini]   # optional allowlist (tags or aliases); absent: every model
        rate_limit: {requests_per_minute: 60, burst: 10}   # optional
        max_concurrent: 4              # optional: requests in flight at once
        admin: true                    # optional: may read /metrics, /router/status and reload
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from router.catalog import Catalog, Model

KEY_PREFIX = "olr-"
BEARER = "bearer "


class KeysFileError(Exception):
    """The keys file cannot be used; the message names the file and what is wrong."""


class RateLimit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    requests_per_minute: float = Field(gt=0)
    burst: int | None = Field(None, ge=1)  # default: requests_per_minute, at least 1


class KeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    key_sha256: str
    models: list[str] | None = None
    rate_limit: RateLimit | None = None
    max_concurrent: int | None = Field(None, ge=1)
    admin: bool = False

    @field_validator("key_sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        value = value.strip().lower()
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise ValueError("must be the 64 hex digits of a sha256 digest")
        return value


class KeysFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    keys: list[KeyEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> KeysFile:
        seen_names: set[str] = set()
        seen_hashes: set[str] = set()
        for entry in self.keys:
            if entry.name in seen_names:
                raise ValueError(f"key name '{entry.name}' appears twice")
            if entry.key_sha256 in seen_hashes:
                raise ValueError(f"key '{entry.name}' has the same key_sha256 as another key")
            seen_names.add(entry.name)
            seen_hashes.add(entry.key_sha256)
        return self


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def read_keys_file(path: str | Path) -> KeysFile:
    """The keys file, or KeysFileError naming the file and the problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise KeysFileError(f"{path}: cannot read the keys file: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise KeysFileError(f"{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise KeysFileError(f"{path}: expected a mapping with a 'keys:' list")
    try:
        return KeysFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe(error, raw) for error in exc.errors())
        raise KeysFileError(f"{path}: {problems}") from None


def _describe(error: Mapping[str, Any], raw: dict[str, Any]) -> str:
    loc: tuple[Any, ...] = tuple(error.get("loc") or ())
    where = ".".join(str(part) for part in loc)
    if len(loc) >= 2 and loc[0] == "keys" and isinstance(loc[1], int):
        entries = raw.get("keys") or []
        entry = entries[loc[1]] if loc[1] < len(entries) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        rest = ".".join(str(part) for part in loc[2:])
        where = f"key '{name}'" if name else f"keys[{loc[1]}]"
        where += f" {rest}" if rest else ""
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


@dataclass(slots=True, eq=False)
class ApiKey:
    """A loaded key: what the request path needs, resolved against the catalog at load."""

    name: str
    digest: bytes
    admin: bool
    allowed_models: frozenset[str] | None  # model keys; None: every model
    per_second: float | None  # token bucket refill rate; None: no rate limit
    burst: int
    max_concurrent: int | None

    def allows(self, model: Model) -> bool:
        return self.allowed_models is None or model.key in self.allowed_models


def _allowlist(entry: KeyEntry, catalog: Catalog, path: str | Path) -> frozenset[str] | None:
    if entry.models is None:
        return None
    keys: set[str] = set()
    for name in entry.models:
        model = catalog.resolve(name)
        if model is None:
            raise KeysFileError(f"{path}: key '{entry.name}': model '{name}' is not in the catalog")
        keys.add(model.key)
    return frozenset(keys)


def _loaded(entry: KeyEntry, catalog: Catalog, path: str | Path) -> ApiKey:
    limit = entry.rate_limit
    per_second = limit.requests_per_minute / 60.0 if limit is not None else None
    burst = (limit.burst if limit.burst is not None else max(1, int(limit.requests_per_minute))) if limit is not None else 0
    return ApiKey(
        entry.name, bytes.fromhex(entry.key_sha256), entry.admin, _allowlist(entry, catalog, path),
        per_second, burst, entry.max_concurrent,
    )


class KeyStore:
    """The keys of one keys file, checked against one catalog at load."""

    CACHE_SIZE = 1024

    def __init__(self, keys: list[ApiKey], path: str = "") -> None:
        self.keys = keys
        self.path = path
        # keys already verified, by the presented string: one dict lookup per request
        # instead of a hash and a compare per stored key. Only valid keys enter, so
        # guessing cannot fill it, and a hit tells a caller nothing its 200 does not.
        self._verified: dict[str, ApiKey] = {}

    @classmethod
    def load(cls, path: str | Path, catalog: Catalog) -> KeyStore:
        return cls([_loaded(entry, catalog, path) for entry in read_keys_file(path).keys], str(path))

    def find(self, presented: str) -> ApiKey | None:
        """The key whose sha256 matches (compared in constant time with every stored hash), or None."""
        known = self._verified.get(presented)
        if known is not None:
            return known
        found = self._search(presented)
        if found is not None and len(self._verified) < self.CACHE_SIZE:
            self._verified[presented] = found
        return found

    def _search(self, presented: str) -> ApiKey | None:
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        found = None
        for key in self.keys:
            if hmac.compare_digest(key.digest, digest):
                found = key
        return found


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key from `Authorization: Bearer KEY` or `x-api-key: KEY`."""
    auth = headers.get("Authorization")
    if auth is not None and auth[:7].lower() == BEARER:
        key = auth[7:].strip()
        if key:
            return key
    api_key = headers.get("x-api-key")
    return api_key.strip() or None if api_key is not None else None
