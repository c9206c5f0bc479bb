"""The provisioning commands fail with a message a user can act on, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.cli import main

REPO = Path(__file__).resolve().parents[2]
CATALOG = str(REPO / "catalog" / "4gpu.yaml")


@pytest.mark.parametrize("command", ["up", "down", "status"])
def test_no_docker_engine_says_how_to_start_one(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    assert main([command, CATALOG]) == 1
    err = capsys.readouterr().err
    assert "cannot reach the Docker engine" in err
    assert "dockerd" in err and "systemctl start docker" in err


def test_a_bad_catalog_is_reported_by_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ncontainers:\n  a: {gpus: [0]}\nmodels: {}\n")
    assert main(["up", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:3:" in err and "needs a port" in err


def test_an_invalid_project_name_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", CATALOG, "--project=bad/name"]) == 1
    assert "invalid project name" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "words"),
    [("up", "--prune"), ("down", "--volumes"), ("status", "loaded"), ("compose", "--output"), ("k8s", "--keys-secret")],
)
def test_help_describes_each_command(command: str, words: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert words in capsys.readouterr().out
