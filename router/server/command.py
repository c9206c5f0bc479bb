"""`ollama-router serve CATALOG`: the router in front of the catalog's containers."""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError

from router.access.keys import KeysFileError, KeyStore
from router.catalog import Catalog, CatalogError, parse_catalog
from router.catalog.command import load_or_report
from router.logs import AccessLog, configure_logging
from router.provision.pull import pull_before_preload
from router.server.app import create_app, reload_everything
from router.server.context import SERVICES
from router.server.reload import RELOADER, CatalogSource
from router.server.runner import run_loop, start_app, wait_for_signal
from router.server.workers import capacity_shares, reserve_port, share_capacity, supervise
from router.settings import RouterSettings

log = structlog.get_logger("router.serve")

FLAG_NAMES = (
    "host", "port", "log_format", "log_level", "keep_warm", "pull_missing", "api_keys_file", "max_body_bytes", "log_bodies", "workers", "watch",
    "redis_url",
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the router in front of the catalog's containers",
        description=(
            "Serve the OpenAI, Anthropic and Ollama APIs on one address, routing each request by model name. "
            "SIGHUP (or POST /router/reload, or --watch) reloads the catalog and the keys file without dropping a request."
        ),
    )
    parser.add_argument("catalog", help="path to the catalog YAML file")
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1; ROUTER_HOST)")
    parser.add_argument("--port", type=int, default=None, help="port to bind (default 8080; ROUTER_PORT)")
    parser.add_argument("--log-format", choices=("json", "console"), default=None, help="log lines as JSON (default) or for humans")
    parser.add_argument("--log-level", default=None, help="debug, info, warning, error (default info)")
    parser.add_argument("--no-keep-warm", dest="keep_warm", action="store_const", const=False, default=None, help="do not preload or keep models loaded")
    parser.add_argument("--no-pull", dest="pull_missing", action="store_const", const=False, default=None, help="do not pull models the containers lack at start")
    parser.add_argument("--api-keys", dest="api_keys_file", default=None, metavar="FILE", help="require API keys from this YAML file (ROUTER_API_KEYS_FILE; see `ollama-router keys add`); re-read when it changes")
    parser.add_argument("--max-body-bytes", type=int, default=None, help="largest request body accepted, else 413 (default 32 MiB)")
    parser.add_argument("--workers", type=int, default=None, metavar="N", help="N router processes sharing the port with SO_REUSEPORT, each with its own health probes and keep-warm (default 1; ROUTER_WORKERS)")
    parser.add_argument(
        "--redis", dest="redis_url", default=None, metavar="URL",
        help="hold rate limits, key concurrency and container slots in this Redis (redis://host:6379/0), shared by every "
        "router process using it: replicas and workers (ROUTER_REDIS_URL; see ROUTER_REDIS_FAILURE, ROUTER_REDIS_PREFIX)",
    )
    parser.add_argument("--watch", action="store_const", const=True, default=None, help="reload the catalog when the file changes on disk (ROUTER_WATCH)")
    parser.add_argument("--log-bodies", action="store_const", const=True, default=None, help="log request bodies (prompt text); off by default")
    parser.set_defaults(func=run)


def cli_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the command line gave (they win over the environment and the catalog, at every reload)."""
    return {name: value for name in FLAG_NAMES if (value := getattr(args, name, None)) is not None}


def settings_from_args(args: argparse.Namespace, catalog_section: dict[str, Any]) -> RouterSettings:
    return RouterSettings.load(catalog_section, **cli_flags(args))


def run(args: argparse.Namespace) -> int:
    result = load_or_report(args.catalog)
    if result is None:
        return 1
    try:
        settings = settings_from_args(args, result.catalog.router)
    except ValidationError as exc:
        print(f"invalid settings: {exc}", file=sys.stderr)
        return 1
    access_log = configure_logging(settings.log_format, settings.log_level)
    catalog = result.catalog
    if settings.api_keys_file:
        try:  # once, before any worker starts
            KeyStore.load(settings.api_keys_file, catalog)
        except KeysFileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    source_text = Path(args.catalog).read_text(encoding="utf-8")
    flags = cli_flags(args)

    async def main(
        catalog: Catalog, source_text: str, access_log: AccessLog, *, reuse_port: bool = False, supervised: bool = False
    ) -> int:
        source = CatalogSource(args.catalog, flags, workers=capacity_shares(settings), supervised=supervised)
        try:
            # In a Compose stack nobody runs `up`: pull what the containers lack first.
            hooks = [pull_before_preload] if settings.pull_missing else []
            app = create_app(catalog, settings, source=source, source_text=source_text, access_log=access_log, before_preload=hooks)
        except KeysFileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        try:
            running = await start_app(app, settings.host, settings.port, reuse_port=reuse_port)
        except OSError as exc:
            print(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        log.info("listening", url=running.url, catalog=args.catalog, workers=settings.workers)
        loop = asyncio.get_running_loop()
        reloads: set[asyncio.Task[None]] = set()

        def on_sighup() -> None:
            task = loop.create_task(reload_everything(app[SERVICES], app[RELOADER], "sighup"))
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_sighup)
        # Startup objects (catalog, pydantic models, imports) live as long as the
        # process: out of the collector's sight, full collections stay cheap.
        gc.collect()
        gc.freeze()
        try:
            await wait_for_signal()
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            await running.close()
        return 0

    if settings.workers > 1:
        try:
            reservation = reserve_port(settings.host, settings.port)
        except OSError as exc:
            print(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        port = reservation.getsockname()[1]
        settings = settings.model_copy(update={"port": port})
        flags["port"] = port
        shares = capacity_shares(settings)
        catalog = share_capacity(catalog, shares)

        def serve_worker(index: int) -> int:
            reservation.close()
            worker_log = configure_logging(settings.log_format, settings.log_level, worker=index)
            # a worker started again after a crash serves the catalog as the file is now
            text, current = _catalog_now(args.catalog, source_text, catalog, shares)
            return run_loop(main(current, text, worker_log, reuse_port=True, supervised=True))

        with reservation:
            return supervise(settings.workers, serve_worker)
    return run_loop(main(catalog, source_text, access_log))


def _catalog_now(path: str, started_text: str, started: Catalog, workers: int) -> tuple[str, Catalog]:
    """The catalog file's current content, or the one the router started with when it is now unusable."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        return text, share_capacity(parse_catalog(text, path).catalog, workers)
    except (OSError, CatalogError):
        return started_text, started
