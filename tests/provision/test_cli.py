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


def _two_hosts(tmp_path: Path, box2: str) -> Path:
    path = tmp_path / "hosts.yaml"
    path.write_text(
        "version: 1\n"
        "hosts:\n"
        "  box1: {docker: 'tcp://127.0.0.1:9', address: 127.0.0.1}\n"
        f"  box2: {box2}\n"
        "containers:\n"
        "  a: {port: 11501, host: box1}\n"
        "  b: {port: 11501, host: box2}\n"
        "models:\n"
        "  llama3.2: {containers: [a, b]}\n"
    )
    return path


@pytest.mark.parametrize("command", ["up", "down", "status"])
def test_every_unreachable_host_is_named_with_why(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listens at port 9 (discard) on loopback; box2's TLS files do not exist."""
    box2 = "{docker: 'tcp://127.0.0.1:2376', address: 10.0.0.2, tls: {ca: missing/ca.pem}}"
    path = _two_hosts(tmp_path, box2)
    assert main([command, str(path)]) == 1
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert "Traceback" not in output
    assert "cannot reach the Docker engine of host 'box1' at tcp://127.0.0.1:9 (connection refused)" in captured.err
    assert f"host 'box2': tls ca file {tmp_path / 'missing' / 'ca.pem'} does not exist" in captured.err
