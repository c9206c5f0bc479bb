"""Placeholder for commands whose issue has not landed yet: they say so and exit 2."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register_placeholder(subparsers: Any, name: str, help_text: str, issue: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=f"{help_text} (not available yet)", description=help_text)
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def run(args: argparse.Namespace) -> int:
        print(f"ollama-router {name}: not available yet ({issue} has not landed)", file=sys.stderr)
        return 2

    parser.set_defaults(func=run)
    return parser
