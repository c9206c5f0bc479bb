"""`ollama-router serve CATALOG`: the router in front of the catalog's containers."""

from __future__ import annotations

import argparse
import gc
import sys
from typing import Any

import structlog
from pydantic import ValidationError

from router.access.keys import KeysFileError, KeyStore
from router.catalog.command import load_or_report
from router.logs import configure_logging
from router.provision.pull import pull_before_preload
from router.server.app import create_app
from router.server.runner import run_loop, start_app, wait_for_signal
from router.server.workers import reserve_port, share_capacity, supervise
from router.settings import RouterSettings

log = structlog.get_logger("router.serve")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the router in front of the catalog's containers",
        description="Serve the OpenAI and Ollama APIs on one address, routing each request by model name.",
    )
    parser.add_argument("catalog", help="path to the catalog YAML file")
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1; ROUTER_HOST)")
    parser.add_argument("--port", type=int, default=None, help="port to bind (default 8080; ROUTER_PORT)")
    parser.add_argument("--log-format", choices=("json", "console"), default=None, help="log lines as JSON (default) or for humans")
    parser.add_argument("--log-level", default=None, help="debug, info, warning, error (default info)")
    parser.add_argument("--no-keep-warm", dest="keep_warm", action="store_const", const=False, default=None, help="do not preload or keep models loaded")
    parser.add_argument("--no-pull", dest="pull_missing", action="store_const", const=False, default=None, help="do not pull models the containers lack at start")
    parser.add_argument("--api-keys", dest="api_keys_file", default=None, metavar="FILE", help="require API keys from this YAML file (ROUTER_API_KEYS_FILE; see `ollama-router keys add`)")
    parser.add_argument("--max-body-bytes", type=int, default=None, help="largest request body accepted, else 413 (default 32 MiB)")
    parser.add_argument("--workers", type=int, default=None, metavar="N", help="N router processes sharing the port with SO_REUSEPORT, each with its own health probes and keep-warm (default 1; ROUTER_WORKERS)")
    parser.add_argument("--log-bodies", action="store_const", const=True, default=None, help="log request bodies (prompt text); off by default")
    parser.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace, catalog_section: dict[str, Any]) -> RouterSettings:
    flags = {name: getattr(args, name, None) for name in ("host", "port", "log_format", "log_level", "keep_warm", "pull_missing", "api_keys_file", "max_body_bytes", "log_bodies", "workers")}
    return RouterSettings.load(catalog_section, **flags)


def run(args: argparse.Namespace) -> int:
    result = load_or_report(args.catalog)
    if result is None:
        return 1
    try:
        settings = settings_from_args(args, result.catalog.router)
    except ValidationError as exc:
        print(f"invalid settings: {exc}", file=sys.stderr)
        return 1
    configure_logging(settings.log_format, settings.log_level)
    catalog = result.catalog
    if settings.api_keys_file:
        try:  # once, before any worker starts
            KeyStore.load(settings.api_keys_file, catalog)
        except KeysFileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    async def main(reuse_port: bool = False) -> int:
        try:
            # In a Compose stack nobody runs `up`: pull what the containers lack first.
            hooks = [pull_before_preload] if settings.pull_missing else []
            app = create_app(catalog, settings, before_preload=hooks)
        except KeysFileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        try:
            running = await start_app(app, settings.host, settings.port, reuse_port=reuse_port)
        except OSError as exc:
            print(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        log.info("listening", url=running.url, catalog=args.catalog, workers=settings.workers)
        # Startup objects (catalog, pydantic models, imports) live as long as the
        # process: out of the collector's sight, full collections stay cheap.
        gc.collect()
        gc.freeze()
        try:
            await wait_for_signal()
        finally:
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
        catalog = share_capacity(catalog, settings.workers)

        def serve_worker(index: int) -> int:
            reservation.close()
            configure_logging(settings.log_format, settings.log_level, worker=index)
            return run_loop(main(reuse_port=True))

        with reservation:
            return supervise(settings.workers, serve_worker)
    return run_loop(main())
