"""One keyed router per test module in front of llama's two child-process
emulators (a, b) and qwen's (q); see support.CATALOG."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.apis.support import CATALOG, Apis, make_keys_file
from tests.harness import router_fleet


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def apis(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Apis]:
    file, keys = make_keys_file(tmp_path_factory.mktemp("keys"))
    # tests inject failures one after another: a high threshold keeps ejection out of their way
    settings = {"api_keys_file": str(file), "failure_threshold": 1000}
    async with router_fleet(CATALOG, subprocess_containers={"a", "b"}, settings=settings) as fleet:
        yield Apis(fleet, keys)
