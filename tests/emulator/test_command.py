"""`ollama-router emulate` / `python -m router.emulator`: flags, OLLAMA_* variables, signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from router.emulator.command import add_arguments, config_from_args
from router.emulator.envconfig import parse_ollama_host
from tests.emulator.conftest import raw
from tests.harness import free_port


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ("127.0.0.1", 11434)),
        ("0.0.0.0", ("0.0.0.0", 11434)),
        (" '127.0.0.2:9000' ", ("127.0.0.2", 9000)),
        (":8080", ("", 8080)),
        ("http://example.com", ("example.com", 80)),
        ("https://example.com", ("example.com", 443)),
        ("[::1]:7000", ("::1", 7000)),
        ("127.0.0.1:99999", ("127.0.0.1", 11434)),
    ],
)
def test_ollama_host_parsing(value, expected):
    assert parse_ollama_host(value) == expected


def parse(argv: list[str]):
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(argv))


def test_env_variables_fill_absent_flags(monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.3:12000")
    monkeypatch.setenv("OLLAMA_NUM_PARALLEL", "4")
    monkeypatch.setenv("OLLAMA_MAX_QUEUE", '"7"')
    monkeypatch.setenv("OLLAMA_MAX_LOADED_MODELS", "0")
    monkeypatch.setenv("OLLAMA_KEEP_ALIVE", "3600")
    monkeypatch.setenv("OLLAMA_ORIGINS", "https://a.example,chrome-extension://*")
    config = parse(["--model", "llama3.2"])
    assert config.origins == ["https://a.example", "chrome-extension://*"]
    assert (config.host, config.port, config.num_parallel, config.max_queue) == ("127.0.0.3", 12000, 4, 7)
    assert config.max_loaded_models == 3 and config.default_keep_alive == 3600


def test_flags_win_over_env(monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", "0.0.0.0:1")
    monkeypatch.setenv("OLLAMA_NUM_PARALLEL", "4")
    config = parse(["--host", "127.0.0.1", "--port", "5", "--num-parallel", "2", "--keep-alive", "-1", "--no-pull",
                    "--version", "0.32.5", "--embedding-model", "bge-m3"])
    assert (config.host, config.port, config.num_parallel) == ("127.0.0.1", 5, 2)
    assert config.default_keep_alive == float("inf") and not config.allow_pull
    assert config.legacy_chat_stream and config.embedding_models == ["bge-m3"]


def test_invalid_env_integer_falls_back(monkeypatch):
    monkeypatch.setenv("OLLAMA_NUM_PARALLEL", "lots")
    assert parse([]).num_parallel == 1


def test_module_entry_reads_ollama_host_and_stops_on_sigterm():
    port = free_port()
    env = {**os.environ, "OLLAMA_HOST": f"127.0.0.1:{port}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "router.emulator", "--model", "llama3.2"],
        env=env, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert f"http://127.0.0.1:{port}" in process.stdout.readline()
        assert raw(f"http://127.0.0.1:{port}", "GET", "/").body == b"Ollama is running"
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


def test_subprocess_fixture_can_be_killed(emulator):
    emu = emulator(subprocess=True)
    assert emu.pid and raw(emu.url, "GET", "/api/version").status == 200
    emu.kill()
    with pytest.raises(ConnectionRefusedError):
        raw(emu.url, "GET", "/")


def test_cli_has_the_emulate_command():
    result = subprocess.run(
        [sys.executable, "-c", "from router.cli import main; main(['emulate', '--help'])"],
        capture_output=True, text=True,
    )
    for flag in ("--model", "--embedding-model", "--load-time", "--tokens-per-second", "--num-parallel",
                 "--max-queue", "--max-loaded-models", "--keep-alive", "--version", "--no-pull"):
        assert flag in result.stdout


def test_port_in_use_exits_1_with_a_message():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "router.emulator", "--port", str(port)], capture_output=True, text=True, timeout=30
        )
    assert result.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_bad_model_name_exits_2():
    result = subprocess.run(
        [sys.executable, "-m", "router.emulator", "--port", "0", "--model", "bad name"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2 and "invalid model name 'bad name'" in result.stderr
