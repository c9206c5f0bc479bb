"""The `ollama-router` command line: each command lives with the module it drives.

Every module below exposes `register(subparsers)`, adding its command(s) and
setting `func(args) -> exit code`. This file only assembles them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from router import __version__

# Order is the order of `--help`.
COMMAND_MODULES = (
    "router.catalog.command",  # validate
    "router.server.command",  # serve
    "router.provision.command",  # up, down, status, compose, k8s
    "router.emulator.command",  # emulate
    "router.demo",  # demo
    "router.access.command",  # keys
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ollama-router",
        description="One address in front of GPU-pinned Ollama containers: routes OpenAI and Ollama API requests by model name.",
    )
    parser.add_argument("--version", action="version", version=f"ollama-router {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
