"""`ollama-router validate CATALOG`: check a catalog and show what it declares."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from router.catalog.loader import CatalogError, LoadResult, load_catalog
from router.catalog.model import Catalog


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check a catalog; print models -> containers -> GPUs",
        description="Check a catalog file. Errors are printed as file:line: message (exit 1); warnings too (exit 0).",
    )
    parser.add_argument("catalog", help="path to the catalog YAML file")
    parser.set_defaults(func=run)


def load_or_report(path: str) -> LoadResult | None:
    """Load a catalog for any command; on failure print file:line problems to stderr."""
    try:
        result = load_catalog(path)
    except CatalogError as exc:
        for problem in exc.problems:
            print(f"{problem}", file=sys.stderr)
        return None
    for warning in result.warnings:
        print(f"{warning} (warning)", file=sys.stderr)
    return result


def catalog_table(catalog: Catalog) -> Table:
    table = Table(title=f"{catalog.path}: {len(catalog.models)} models, {len(catalog.containers)} containers")
    for column in ("model", "containers", "GPUs / URL", "routing", "aliases", "fallbacks"):
        table.add_column(column)
    for model in catalog.models.values():
        placements = []
        for name in model.containers:
            container = catalog.containers[name]
            if container.managed:
                gpus = ",".join(map(str, container.gpus)) if container.gpus else "cpu"
                where = f"GPU {gpus} :{container.port}" if container.gpus else f"cpu :{container.port}"
                placements.append(f"{container.host}: {where}" if catalog.hosts else where)
            else:
                placements.append(container.url)
        table.add_row(
            model.tag,
            "\n".join(model.containers),
            "\n".join(placements),
            model.routing.value,
            "\n".join(model.aliases) or "-",
            " -> ".join(model.fallback) or "-",
        )
    return table


def run(args: argparse.Namespace) -> int:
    result = load_or_report(args.catalog)
    if result is None:
        return 1
    Console(width=max(Console().width, 160)).print(catalog_table(result.catalog))
    return 0
