"""`ollama-router keys add NAME --file FILE`: make a key, print it once, store only its sha256."""

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
    add.add_argument("--admin", action="store_true", help="may read /metrics and /router/status")
    add.add_argument("--rate-limit", type=float, default=None, metavar="RPM", help="requests per minute (token bucket)")
    add.add_argument("--burst", type=int, default=None, metavar="N", help="requests allowed at once (default: RPM)")
    add.set_defaults(func=run_add)


def run_add(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        current = read_keys_file(path) if path.exists() else KeysFile()
    except KeysFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if any(entry.name == args.name for entry in current.keys):
        print(f"error: {path}: a key named '{args.name}' exists already", file=sys.stderr)
        return 1
    if args.burst is not None and args.rate_limit is None:
        print("error: --burst needs --rate-limit", file=sys.stderr)
        return 1
    key = new_key()
    try:
        rate_limit = RateLimit(requests_per_minute=args.rate_limit, burst=args.burst) if args.rate_limit is not None else None
        entry = KeyEntry(name=args.name, key_sha256=hash_key(key), models=args.models, rate_limit=rate_limit, admin=args.admin)
        updated = KeysFile(keys=[*current.keys, entry])
    except ValidationError as exc:
        print(f"error: {'; '.join(str(e['msg']) for e in exc.errors())}", file=sys.stderr)
        return 1
    _write(path, updated)
    print(key)
    print(f"added key '{args.name}' to {path}; the key above is shown only this once", file=sys.stderr)
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
