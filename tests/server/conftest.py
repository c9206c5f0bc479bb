"""The fleet most router tests share: one per test module (see support.CATALOG)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.harness import RouterFleet, router_fleet
from tests.server.support import CATALOG


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet() -> AsyncIterator[RouterFleet]:
    async with router_fleet(CATALOG) as running:
        yield running
