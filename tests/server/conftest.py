"""The fleet most router tests share: one per test module (see support.CATALOG)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.harness import RouterFleet, router_fleet
from tests.server.support import CATALOG, OLDEST_VERSION


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet() -> AsyncIterator[RouterFleet]:
    # The embedder runs an older Ollama: /api/version must report the fleet's lowest.
    # These tests inject upstream failures one after another on a shared router: a high
    # failure threshold keeps outlier ejection (tests/fleet/test_ejection.py) out of their way.
    async with router_fleet(CATALOG, per_container={"e": {"version": OLDEST_VERSION}}, settings={"failure_threshold": 1000}) as running:
        yield running
