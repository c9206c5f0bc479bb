"""Fixtures for the shared-limits tests: a real redis-server (tests/limits/redis_server.py)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.limits.redis_server import BINARY, MISSING, RedisServer


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The redis-server ./scripts/test started, or one of this session's own."""
    given = os.environ.get("OLLAMA_ROUTER_TEST_REDIS_URL")
    if given:
        yield given
        return
    if BINARY is None:
        pytest.skip(MISSING)
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, to kill and start again."""
    if BINARY is None:
        pytest.skip(MISSING)
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def namespace() -> str:
    """A prefix of this test's own: tests sharing one Redis never see each other's counts."""
    return f"test-{uuid.uuid4().hex[:12]}"
