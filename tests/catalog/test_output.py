"""What a user sees from `ollama-router validate`: warnings, the table, the
console script's output and exit codes, and the example catalogs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from router.catalog.loader import load_catalog
from tests.catalog.support import (
    BASE,
    EXAMPLES,
    M,
    Validate,
    assert_warned_at_mark,
    edit,
    marked_line,
    run_cli,
    run_console_script,
)

WARNINGS: list[tuple[str, str, str]] = [
    ("gpu-shared", edit("    gpus: [1]\n", f"    gpus: [0]{M}\n"), "GPU 0 is shared by containers 'llama-a' and 'llama-b'"),
    ("gpu-shared-in-list", edit("    gpus: [1]\n", f"    gpus:\n      - 1\n      - 0{M}\n"),
     "GPU 0 is shared by containers 'llama-a' and 'llama-b'"),
    ("container-unused", edit("models:\n", f"  spare:{M}\n    gpus: [3]\n    port: 11509\nmodels:\n"),
     "container 'spare' serves no model"),
    ("on-overflow-refuse", edit("    aliases: [gpt-4o]\n", f"    aliases: [gpt-4o]\n    on_overflow: refuse{M}\n"),
     "on_overflow refuse: requests to 'qwen2.5:7b' through /api are refused when too long, but Ollama's /v1 APIs "
     "cannot turn the context shift off: a /v1 request reloads the model with the shift on (unless its family never "
     "shifts, as deepseek2)"),
    ("cloud-model-without-cloud", edit("    aliases: [gpt-4o]\n", f"    aliases: [gpt-4o]\n  gpt-oss:120b-cloud:{M}\n    containers: [llama-b]\n"),
     "cloud model 'gpt-oss:120b-cloud' is on managed container 'llama-b', which runs with OLLAMA_NO_CLOUD=1: "
     'set OLLAMA_NO_CLOUD: "0" in its env to reach ollama.com'),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in WARNINGS], ids=[i for i, _, _ in WARNINGS])
def test_warning_names_line_and_exits_0(validate: Validate, text: str, expected: str) -> None:
    outcome = assert_warned_at_mark(validate, text, expected)
    assert "llama3.2:3b" in outcome.out  # the table is still printed


def _cells(line: str) -> list[str]:
    """The cells of one table line (rich draws ┃ in the header, │ in the body)."""
    return [c.strip() for c in re.split("[│┃]", line)][1:-1]


def _table_rows(out: str) -> dict[str, list[str]]:
    """Table lines split into cells, by the model in their first cell."""
    return {cells[0]: cells for line in out.splitlines() if (cells := _cells(line)) and cells[0]}


def test_success_prints_models_containers_gpus_routing_aliases_fallbacks(validate: Validate) -> None:
    _path, outcome = validate(BASE)
    assert (outcome.code, outcome.err) == (0, "")
    rows = _table_rows(outcome.out)
    assert rows["model"] == ["model", "containers", "GPUs / URL", "routing", "aliases", "fallbacks"]
    # a model with siblings places by conversation unless told otherwise; one container has nothing to choose
    assert rows["llama3.2:3b"] == ["llama3.2:3b", "llama-a", "GPU 0 :11501", "affinity", "gpt-4o-mini", "qwen2.5:7b"]
    assert rows["qwen2.5:7b"] == ["qwen2.5:7b", "remote", "http://127.0.0.1:11434", "least_loaded", "gpt-4o", "-"]
    # the second container of llama3.2:3b sits on the next table line
    lines = [_cells(line) for line in outcome.out.splitlines()]
    assert lines[lines.index(rows["llama3.2:3b"]) + 1] == ["", "llama-b", "GPU 1 :11502", "", "", ""]


@pytest.mark.parametrize("routing", ["affinity", "least_loaded", "round_robin"])
def test_the_routing_the_catalog_names_is_shown(validate: Validate, routing: str) -> None:
    _path, outcome = validate(edit("    fallback: [qwen2.5:7b]\n", f"    fallback: [qwen2.5:7b]\n    routing: {routing}\n"))
    assert outcome.code == 0, outcome.err
    assert _table_rows(outcome.out)["llama3.2:3b"][3] == routing


def test_table_shows_normalised_tags(validate: Validate) -> None:
    text = edit("  qwen2.5:7b:\n", "  qwen2.5:\n").replace("[qwen2.5:7b]", "[qwen2.5]")
    _, outcome = validate(text)
    assert outcome.code == 0
    assert "qwen2.5:latest" in _table_rows(outcome.out)


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_catalog_validates(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_cli(["validate", str(example)], capsys)
    assert outcome.code == 0, outcome.err
    outcome.problems(example)  # warnings, if any, are file:line lines
    rows = _table_rows(outcome.out)
    for model in load_catalog(example).catalog.models.values():
        assert model.tag in rows


def test_both_example_catalogs_exist() -> None:
    assert {p.name for p in EXAMPLES} >= {"demo.yaml", "4gpu.yaml"}


# Through the command line: the console script as a user's shell runs it, or cli.main in-process.


def test_console_script_refuses_with_file_line(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    text = edit("    gpus: [1]\n", f"    gpu: [1]{M}\n")
    path.write_text(text)
    outcome = run_console_script(["validate", str(path)])
    assert outcome.code == 1
    assert outcome.problems(path) == [(marked_line(text), "unknown key 'gpu' in containers.llama-b")]
    assert outcome.out == ""


def test_syntax_error_is_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("version: 1\ncontainers:\n  a: {gpus: [0]\nmodels: {}\n")
    outcome = run_cli(["validate", str(path)], capsys)
    assert outcome.code == 1
    ((line, message),) = outcome.problems(path)
    assert line == 4 and message.startswith("YAML syntax error") and "starts at line 3" in message


def test_console_script_warning_and_table(tmp_path: Path) -> None:
    path = tmp_path / "shared.yaml"
    path.write_text(edit("    gpus: [1]\n", "    gpus: [0]\n"))
    outcome = run_console_script(["validate", str(path)])
    assert outcome.code == 0
    assert outcome.problems(path) == [(9, "GPU 0 is shared by containers 'llama-a' and 'llama-b' (warning)")]
    assert "GPU 0 :11502" in outcome.out


def test_relative_path_is_printed_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text(edit("    port: 11502\n", "    port: 11501\n"))
    monkeypatch.chdir(tmp_path)
    outcome = run_cli(["validate", "sub/c.yaml"], capsys)
    assert outcome.code == 1
    assert outcome.problems("sub/c.yaml") == [(10, "port 11501 is already used by container 'llama-a'")]


def test_console_script_missing_file_exits_1_without_traceback(tmp_path: Path) -> None:
    outcome = run_console_script(["validate", str(tmp_path / "missing.yaml")])
    assert outcome.code == 1
    assert outcome.err.startswith(f"{tmp_path / 'missing.yaml'}:") and "no such file" in outcome.err
    assert "Traceback" not in outcome.err


def test_directory_instead_of_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_cli(["validate", str(tmp_path)], capsys)
    assert outcome.code == 1
    assert outcome.err.startswith(f"{tmp_path}:") and "cannot read" in outcome.err


# Every command of the README's Command line table.

COMMANDS = ["validate", "serve", "up", "down", "status", "compose", "emulate", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_cli([command, "--help"], capsys)
    assert outcome.code == 0
    assert outcome.out.startswith(f"usage: ollama-router {command}")


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_cli(["--help"], capsys)
    assert outcome.code == 0
    listed = {line.split()[0] for line in outcome.out.splitlines() if line.startswith("    ") and line.split()}
    assert set(COMMANDS) <= listed


def test_validate_without_catalog_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_cli(["validate"], capsys)
    assert outcome.code == 2
    assert "usage: ollama-router validate" in outcome.err
