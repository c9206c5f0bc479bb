"""`ollama-router keys …`: the API keys file, which holds only sha256 hashes.

- `add NAME`: make a key, print it once, store its hash;
- `list`: names, allowlists and limits (never hashes);
- `revoke NAME`: remove a key (a running router refuses it within a second);
- `rotate NAME`: a new key for NAME, printed once; the old one stops working.

Every change is written atomically with mode 0600; a running router re-reads
the file when it changes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from router.access.keys import KeyEntry, KeysFile, KeysFileError, RateLimit, hash_key, new_key, read_keys_file


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("keys", help="manage API keys", description="Manage the API keys file (`serve --api-keys FILE`).")
    commands = parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    add = commands.add_parser(
        "add",
        help="make a new key, print it once, store its hash",
        description="Make a random API key, print it once on stdout, and store only its sha256 in FILE (created when missing).",
    )
    add.add_argument("name", help="a name for the key (shown in logs and metrics)")
    add.add_argument("--file", required=True, help="the keys YAML file")
    add.add_argument("--models", nargs="+", default=None, metavar="MODEL", help="allow only these models (tags or aliases); default: every model")
    add.add_argument("--admin", action="store_true", help="may read /metrics and /router/status, and reload")
    add.add_argument("--rate-limit", type=float, default=None, metavar="RPM", help="requests per minute (token bucket)")
    add.add_argument("--burst", type=int, default=None, metavar="N", help="requests allowed at once (default: RPM)")
    add.add_argument("--max-concurrent", type=int, default=None, metavar="N", help="requests in flight at once (default: no limit)")
    add.set_defaults(func=run_add)

    listing = commands.add_parser("list", help="show the keys (names, allowlists, limits; never hashes)")
    listing.add_argument("--file", required=True, help="the keys YAML file")
    listing.set_defaults(func=run_list)

    revoke = commands.add_parser("revoke", help="remove a key: it stops working at once", description="Remove key NAME from FILE.")
    revoke.add_argument("name")
    revoke.add_argument("--file", required=True, help="the keys YAML file")
    revoke.set_defaults(func=run_revoke)

    rotate = commands.add_parser(
        "rotate", help="a new key for NAME, printed once; the old one stops working",
        description="Replace key NAME's secret with a new one (same name, allowlist and limits), printed once on stdout.",
    )
    rotate.add_argument("name")
    rotate.add_argument("--file", required=True, help="the keys YAML file")
    rotate.set_defaults(func=run_rotate)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _read(path: Path, *, missing_ok: bool = False) -> KeysFile:
    if missing_ok and not path.exists():
        return KeysFile()
    return read_keys_file(path)


def run_add(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        current = _read(path, missing_ok=True)
    except KeysFileError as exc:
        return _fail(str(exc))
    if any(entry.name == args.name for entry in current.keys):
        return _fail(f"{path}: a key named '{args.name}' exists already")
    if args.burst is not None and args.rate_limit is None:
        return _fail("--burst needs --rate-limit")
    key = new_key()
    try:
        rate_limit = RateLimit(requests_per_minute=args.rate_limit, burst=args.burst) if args.rate_limit is not None else None
        entry = KeyEntry(
            name=args.name, key_sha256=hash_key(key), models=args.models, rate_limit=rate_limit,
            max_concurrent=args.max_concurrent, admin=args.admin,
        )
        updated = KeysFile(keys=[*current.keys, entry])
    except ValidationError as exc:
        return _fail("; ".join(str(e["msg"]) for e in exc.errors()))
    _write(path, updated)
    print(key)
    print(f"added key '{args.name}' to {path}; the key above is shown only this once", file=sys.stderr)
    return 0


def run_list(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        current = _read(path)
    except KeysFileError as exc:
        return _fail(str(exc))
    table = Table(title=f"{path}: {len(current.keys)} keys")
    for column in ("name", "admin", "models", "rate limit", "max concurrent"):
        table.add_column(column)
    for entry in current.keys:
        limit = entry.rate_limit
        rate = f"{limit.requests_per_minute:g}/min, burst {limit.burst or max(1, int(limit.requests_per_minute))}" if limit else "-"
        table.add_row(
            entry.name, "yes" if entry.admin else "no", ", ".join(entry.models) if entry.models is not None else "all",
            rate, str(entry.max_concurrent) if entry.max_concurrent else "-",
        )
    Console(width=120).print(table)
    return 0


def _with_key(args: argparse.Namespace) -> tuple[Path, KeysFile] | str:
    """The keys file holding key `args.name`, or what is wrong."""
    path = Path(args.file)
    try:
        current = _read(path)
    except KeysFileError as exc:
        return str(exc)
    if not any(entry.name == args.name for entry in current.keys):
        return f"{path}: no key named '{args.name}'"
    return path, current


def run_revoke(args: argparse.Namespace) -> int:
    found = _with_key(args)
    if isinstance(found, str):
        return _fail(found)
    path, current = found
    _write(path, KeysFile(keys=[entry for entry in current.keys if entry.name != args.name]))
    print(f"revoked key '{args.name}' in {path}", file=sys.stderr)
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    found = _with_key(args)
    if isinstance(found, str):
        return _fail(found)
    path, current = found
    key = new_key()
    rotated = [entry.model_copy(update={"key_sha256": hash_key(key)}) if entry.name == args.name else entry for entry in current.keys]
    _write(path, KeysFile(keys=rotated))
    print(key)
    print(f"rotated key '{args.name}' in {path}: the key above replaces the old one and is shown only this once", file=sys.stderr)
    return 0


def _write(path: Path, keys_file: KeysFile) -> None:
    """Atomically, readable by the owner only."""
    text = yaml.safe_dump(keys_file.model_dump(mode="json", exclude_none=True, exclude_defaults=False), sort_keys=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
