from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.catalog.support import Outcome, Validate, run_cli


@pytest.fixture
def validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Validate:
    """Write catalog text to a file and run `ollama-router validate FILE` on it."""

    def run(text: str) -> tuple[Path, Outcome]:
        path = tmp_path / "catalog.yaml"
        path.write_text(text, encoding="utf-8")
        return path, run_cli(["validate", str(path)], capsys)

    return run


@pytest.fixture(autouse=True)
def _no_router_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """ROUTER_* variables of the machine running the tests must not leak in."""
    for name in list(os.environ):
        if name.upper().startswith("ROUTER_"):
            monkeypatch.delenv(name)
