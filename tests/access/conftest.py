"""One router with API keys per test module; the keys are made with `ollama-router keys add`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.access.support import CATALOG, KEY_SPECS, MAX_BODY, Keyed, keys_add
from tests.harness import router_fleet


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def keyed(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Keyed]:
    file: Path = tmp_path_factory.mktemp("keys") / "keys.yaml"
    keys, outputs = {}, {}
    for name, args in KEY_SPECS.items():
        code, output = keys_add(file, name, *args)
        assert code == 0, output.stderr
        keys[name], outputs[name] = output.key, output
    settings = {"api_keys_file": str(file), "max_body_bytes": MAX_BODY}
    async with router_fleet(CATALOG, settings=settings) as fleet:
        yield Keyed(fleet, file, keys, outputs)
