"""Everything one emulated server holds, built from its config."""

from __future__ import annotations

import time
from dataclasses import dataclass

from router.emulator.config import EmulatorConfig
from router.emulator.engine import Engine
from router.emulator.faults import FaultBook
from router.emulator.scheduler import Scheduler
from router.emulator.stats import Stats
from router.emulator.store import ModelStore


@dataclass(slots=True)
class Emulator:
    config: EmulatorConfig
    store: ModelStore
    stats: Stats
    faults: FaultBook
    scheduler: Scheduler
    engine: Engine

    @classmethod
    def build(cls, config: EmulatorConfig) -> Emulator:
        store = ModelStore()
        started = time.time()
        embedding = set(config.embedding_models)
        audio = set(config.audio_models)
        # Listed order = newest first in /api/tags (sorted by modified_at).
        names = list(dict.fromkeys([*config.models, *config.embedding_models, *config.audio_models]))
        for index, name in enumerate(names):
            store.install(
                name, embedding=name in embedding, audio=name in audio, modified_at=started - 60 * (index + 1)
            )
        stats = Stats()
        faults = FaultBook()
        scheduler = Scheduler(config, stats, faults)
        return cls(config, store, stats, faults, scheduler, Engine(config, scheduler))
