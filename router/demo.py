"""`ollama-router demo [CATALOG]`: any catalog, with emulated Ollama servers
standing in for its containers, and the router in front. No GPU, no Docker.

Every container is emulated, the remote (`url:`) ones too, so a demo never
sends traffic off this machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import socket
import sys
from typing import TYPE_CHECKING, Any

import structlog

from router.catalog import Catalog
from router.catalog.command import load_or_report
from router.logs import configure_logging
from router.server.app import create_app
from router.server.runner import RunningApp, run_loop, start_app, wait_for_signal
from router.settings import RouterSettings

if TYPE_CHECKING:
    from router.emulator.server import RunningEmulator

log = structlog.get_logger("router.demo")
DEFAULT_CATALOG = "catalog/demo.yaml"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="emulated backends plus the router for a catalog, no GPU or Docker needed",
        description="Run CATALOG with emulated Ollama servers standing in for its containers, and the router in front.",
    )
    parser.add_argument("catalog", nargs="?", default=DEFAULT_CATALOG, help=f"catalog to demo (default {DEFAULT_CATALOG})")
    parser.add_argument("--host", default="127.0.0.1", help="router address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="router port (default 8080)")
    parser.add_argument("--tokens-per-second", type=float, default=40.0, help="emulated generation speed (default 40)")
    parser.add_argument("--load-time", type=float, default=0.5, help="emulated cold-load seconds (default 0.5)")
    parser.add_argument("--log-format", choices=("json", "console"), default="console")
    parser.set_defaults(func=run)


def _emulator_port(port: int | None) -> int:
    """The catalog's port when it is set and free on loopback, else 0 (any free port)."""
    if not port:
        return 0
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return 0
    return port


async def start_emulators(catalog: Catalog, *, tokens_per_second: float, load_time: float) -> tuple[Catalog, list[RunningEmulator]]:
    """One emulator per container; returns the catalog pointed at them."""
    from router.emulator.server import EmulatorConfig, run_emulator

    emulators: list[RunningEmulator] = []
    containers = {}
    for name, container in catalog.containers.items():
        models = catalog.models_on(name)
        config = EmulatorConfig(
            host="127.0.0.1",
            port=_emulator_port(container.port),
            models=[m.tag for m in models if not m.is_embedding],
            embedding_models=[m.tag for m in models if m.is_embedding],
            load_time=load_time,
            tokens_per_second=tokens_per_second,
            num_parallel=container.num_parallel,
            max_loaded_models=max(3, len(models)),
        )
        emulator = await run_emulator(config)
        emulators.append(emulator)
        containers[name] = dataclasses.replace(container, url=emulator.url)
    return dataclasses.replace(catalog, containers=containers), emulators


def usage(url: str, catalog: Catalog) -> str:
    chat = next((m for m in catalog.models.values() if not m.is_embedding), None)
    embed = next((m for m in catalog.models.values() if m.is_embedding), None)
    name = (chat.aliases[0] if chat and chat.aliases else chat.tag) if chat else "MODEL"
    lines = [
        f"ollama-router demo: router on {url} ({len(catalog.models)} models, {len(catalog.containers)} emulated containers)",
        "",
        "  curl:",
        f"    curl {url}/v1/chat/completions -H 'Content-Type: application/json' \\",
        f"      -d '{{\"model\": \"{name}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello\"}}]}}'",
        f"    curl {url}/v1/models",
        "  OpenAI SDK:",
        f"    OpenAI(base_url=\"{url}/v1\", api_key=\"unused\").chat.completions.create(model=\"{name}\", messages=[...])",
        "  Ollama client:",
        f"    OLLAMA_HOST={url} ollama run {chat.tag if chat else 'MODEL'}",
        f"    ollama.Client(host=\"{url}\").chat(model=\"{chat.tag if chat else 'MODEL'}\", messages=[...])",
    ]
    if embed is not None:
        lines.append(f"  Embeddings: curl {url}/v1/embeddings -d '{{\"model\": \"{embed.aliases[0] if embed.aliases else embed.tag}\", \"input\": \"hi\"}}'")
    lines += [f"  Fleet state: curl {url}/router/status", "", "Ctrl-C stops everything."]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    result = load_or_report(args.catalog)
    if result is None:
        return 1
    configure_logging(args.log_format, "info")
    settings = RouterSettings.load(result.catalog.router, host=args.host, port=args.port)

    async def main() -> int:
        catalog, emulators = await start_emulators(
            result.catalog, tokens_per_second=args.tokens_per_second, load_time=args.load_time
        )
        router: RunningApp | None = None
        try:
            try:
                router = await start_app(create_app(catalog, settings), settings.host, settings.port)
            except OSError as exc:
                print(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc} (try --port)", file=sys.stderr)
                return 1
            print(usage(router.url, catalog), flush=True)
            await wait_for_signal()
        finally:
            if router is not None:
                await router.close()
            for emulator in emulators:
                await emulator.close()
        return 0

    return run_loop(main())
