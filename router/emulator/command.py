"""`ollama-router emulate ...` and `python -m router.emulator ...` (same options).

Flags win; absent flags fall back to the OLLAMA_* variables Ollama itself reads,
then to Ollama's defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from router.catalog.names import InvalidModelName, parse_model_name
from router.emulator.config import DEFAULT_VERSION, EmulatorConfig
from router.emulator.envconfig import env, env_bool, env_int, parse_ollama_host


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--host", help="bind address (default: from OLLAMA_HOST, else 127.0.0.1)")
    add("--port", type=int, help="port (default: from OLLAMA_HOST, else 11434; 0 = any free port)")
    add("--model", dest="models", action="append", default=[], metavar="NAME",
        help="installed model, repeatable; names containing 'embed' are embedding-only")
    add("--embedding-model", dest="embedding_models", action="append", default=[], metavar="NAME",
        help="installed embedding-only model, repeatable")
    add("--load-time", type=float, default=0.0, metavar="SECONDS", help="cold-load time (default 0)")
    add("--tokens-per-second", type=float, default=0.0, metavar="N",
        help="generation speed; 0 = as fast as possible (default)")
    add("--num-parallel", type=int, metavar="N", help="parallel requests per model (OLLAMA_NUM_PARALLEL, default 1)")
    add("--max-queue", type=int, metavar="N", help="scheduler queue depth before 503 (OLLAMA_MAX_QUEUE, default 512)")
    add("--max-loaded-models", type=int, metavar="N",
        help="loaded-model cap (OLLAMA_MAX_LOADED_MODELS, default 0 = 3)")
    add("--keep-alive", metavar="DURATION", help="default keep-alive (OLLAMA_KEEP_ALIVE, default 5m)")
    add("--context-length", type=int, metavar="N",
        help="num_ctx of loads that ask for none (OLLAMA_CONTEXT_LENGTH, default 0 = from --vram-gib)")
    add("--vram-gib", type=float, default=0.0, metavar="GIB",
        help="GPU memory the server has: sets the default num_ctx (<23: 4096, <47: 32768, else 262144; default 0)")
    add("--audio-model", dest="audio_models", action="append", default=[], metavar="NAME",
        help="installed model with the audio capability (/v1/audio/transcriptions), repeatable")
    add("--no-cloud", action="store_true",
        help="disable cloud models as ~/.ollama/server.json would (OLLAMA_NO_CLOUD does the same as 'env')")
    add("--version", dest="ollama_version", default=DEFAULT_VERSION, metavar="X.Y.Z",
        help=f"the Ollama release to be (default {DEFAULT_VERSION}): /api/version, which endpoints exist, "
             "the OpenAI chat stream dialect (legacy below 0.32.6)")
    add("--no-pull", dest="allow_pull", action="store_false", help="pulls fail like an unknown manifest")
    add("--response-tokens", type=int, default=24, metavar="N", help="tokens per answer (default 24)")
    add("--pull-time", type=float, default=1.0, metavar="SECONDS", help="simulated download time (default 1)")
    add("--origin", dest="origins", action="append", default=None, metavar="ORIGIN",
        help="extra allowed CORS origin, repeatable (OLLAMA_ORIGINS, comma-separated)")
    add("--no-host-check", dest="check_host", action="store_false",
        help="accept any Host header even on a loopback bind")


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    env_host, env_port = parse_ollama_host(env("OLLAMA_HOST"))
    max_loaded = args.max_loaded_models
    if max_loaded is None:
        max_loaded = env_int("OLLAMA_MAX_LOADED_MODELS", 0)
    num_parallel = args.num_parallel if args.num_parallel is not None else env_int("OLLAMA_NUM_PARALLEL", 1)
    context = args.context_length if args.context_length is not None else env_int("OLLAMA_CONTEXT_LENGTH", 0)
    return EmulatorConfig(
        host=args.host if args.host is not None else env_host,
        port=args.port if args.port is not None else env_port,
        models=list(args.models),
        embedding_models=list(args.embedding_models),
        load_time=args.load_time,
        tokens_per_second=args.tokens_per_second,
        num_parallel=num_parallel if num_parallel > 0 else 1,
        max_queue=args.max_queue if args.max_queue is not None else env_int("OLLAMA_MAX_QUEUE", 512),
        max_loaded_models=max_loaded if max_loaded > 0 else 3,
        keep_alive=args.keep_alive if args.keep_alive is not None else (env("OLLAMA_KEEP_ALIVE") or "5m"),
        version=args.ollama_version,
        allow_pull=args.allow_pull,
        response_tokens=args.response_tokens,
        context_length=max(context, 0),
        vram_gib=max(args.vram_gib, 0.0),
        audio_models=list(args.audio_models),
        no_cloud=args.no_cloud,
        no_cloud_env=env_bool("OLLAMA_NO_CLOUD"),
        pull_time=args.pull_time,
        check_host=args.check_host,
        origins=args.origins if args.origins is not None else (env("OLLAMA_ORIGINS") or "").split(","),
    )


async def _serve(config: EmulatorConfig) -> None:
    from router.emulator.server import run_emulator

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    running = await run_emulator(config)
    models = ", ".join(dict.fromkeys(config.models + config.embedding_models + config.audio_models)) or "none (pull some)"
    # One line on stdout, flushed: scripts and tests wait for it (port 0 included).
    print(f"ollama emulator {config.version} listening on {running.url} models: {models}", flush=True)
    try:
        await stop.wait()
    finally:
        await running.close()


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; 1 when the address cannot be bound, 2 for a bad model name."""
    config = config_from_args(args)
    for name in config.models + config.embedding_models + config.audio_models:
        try:
            parse_model_name(name)
        except InvalidModelName as exc:
            print(f"ollama-router emulate: invalid model name {name!r}: {exc}", file=sys.stderr)
            return 2
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(_serve(config))
    except OSError as exc:
        print(f"ollama-router emulate: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    return 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add `emulate` to the main CLI's subparsers."""
    parser = subparsers.add_parser(
        "emulate", help="run one emulated Ollama server", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m router.emulator", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
