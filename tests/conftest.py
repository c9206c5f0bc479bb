"""Shared fixtures: emulated Ollama servers for every test suite.

    def test_x(emulator):
        emu = emulator(models=["llama3.2"], load_time=0.05)          # in-process (thread)
        proc = emulator(models=["llama3.2"], subprocess=True)         # real process: .pid, .kill()
        emu.url; emu.port; emu.stats(); emu.add_fault("busy", count=1); emu.clear_faults()

`emulator(**fields)` takes any EmulatorConfig field (models, embedding_models,
load_time, tokens_per_second, num_parallel, max_queue, max_loaded_models,
keep_alive, version, allow_pull, response_tokens, context_length, vram_gib,
pull_time, check_host, origins, audio_models, no_cloud, no_cloud_env) and
listens on a free loopback port. Defaults: models
llama3.2 and qwen2.5:7b, embedding model nomic-embed-text, no delays.

The in-process flavour runs on its own event loop in a thread: sync clients
(ollama.Client, openai.OpenAI) and async ones on the test's loop both work,
and `emu.state` exposes the live scheduler/store/stats. It shares the GIL with
the test, so timing-sensitive or load tests should use `subprocess=True`
(also the one to SIGKILL: `emu.kill()`). Control calls (`stats()`,
`add_fault()`, `faults()`, `clear_faults()`) are blocking HTTP, safe from
async tests because the emulator never runs on the test's loop.

Everything started is closed (processes by PID) when the test ends.
`ollama_emulator` is a ready default instance. Fault and stats semantics:
router/emulator/README.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from router.emulator.config import EmulatorConfig
from tests.emulators import EmulatorHandle, start_emulator

DEFAULT_MODELS = ["llama3.2", "qwen2.5:7b"]
DEFAULT_EMBEDDING_MODELS = ["nomic-embed-text"]

EmulatorFactory = Callable[..., EmulatorHandle]


@pytest.fixture
def emulator() -> Iterator[EmulatorFactory]:
    started: list[EmulatorHandle] = []

    def factory(*, subprocess: bool = False, **fields: Any) -> EmulatorHandle:
        fields.setdefault("port", 0)
        fields.setdefault("models", list(DEFAULT_MODELS))
        fields.setdefault("embedding_models", list(DEFAULT_EMBEDDING_MODELS))
        handle = start_emulator(EmulatorConfig(**fields), subprocess=subprocess)
        started.append(handle)
        return handle

    yield factory
    for handle in reversed(started):
        handle.close(timeout=2.0)


@pytest.fixture
def ollama_emulator(emulator: EmulatorFactory) -> EmulatorHandle:
    """One in-process emulator with llama3.2, qwen2.5:7b and nomic-embed-text, no delays."""
    return emulator()
