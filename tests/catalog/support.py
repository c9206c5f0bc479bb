"""Shared pieces of the catalog tests: a small valid catalog, line markers, and
running `ollama-router validate` the way a user does."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from router import cli

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "catalog").glob("*.yaml"))

# A valid catalog every rule test breaks in exactly one place.
BASE = """\
version: 1
defaults:
  keep_alive: 24h
containers:
  llama-a:
    gpus: [0]
    port: 11501
  llama-b:
    gpus: [1]
    port: 11502
  remote:
    url: http://127.0.0.1:11434
models:
  llama3.2:3b:
    containers: [llama-a, llama-b]
    aliases: [gpt-4o-mini]
    fallback: [qwen2.5:7b]
  qwen2.5:7b:
    containers: [remote]
    aliases: [gpt-4o]
"""

MARK = "# <-"
M = f"  {MARK}"  # appended to the line an error or warning must name
PROBLEM_LINE = re.compile(r"^(?P<file>.+?):(?P<line>[1-9][0-9]*): (?P<message>\S.*)$")


def edit(old: str, new: str, text: str = BASE) -> str:
    """`text` with `old` (which must occur exactly once) replaced by `new`."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def marked_line(text: str) -> int:
    """The 1-based number of the one line that carries `MARK`."""
    numbers = [n for n, line in enumerate(text.splitlines(), start=1) if MARK in line]
    assert len(numbers) == 1, f"expected one {MARK!r} marker, found lines {numbers}"
    return numbers[0]


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str

    def problems(self, file: Path | str) -> list[tuple[int, str]]:
        """stderr as (line, message) pairs; every stderr line must be `file:LINE: message`."""
        assert "Traceback" not in self.err, self.err
        found = []
        for text in self.err.splitlines():
            match = PROBLEM_LINE.match(text)
            assert match, f"not a file:line: message line: {text!r}"
            assert match["file"] == str(file)
            found.append((int(match["line"]), match["message"]))
        return found


# `validate(text)` fixture: writes the catalog, runs `ollama-router validate` on it.
Validate = Callable[[str], tuple[Path, Outcome]]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> Outcome:
    """`ollama-router ARGS` in-process (argparse exits become exit codes)."""
    capsys.readouterr()
    try:
        code = cli.main(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def run_console_script(args: list[str], cwd: Path = REPO) -> Outcome:
    """The installed `ollama-router` console script, as a user's shell runs it."""
    script = Path(sys.executable).parent / "ollama-router"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "router.cli"]
    done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=60, cwd=cwd)
    return Outcome(done.returncode, done.stdout, done.stderr)


def assert_refused_at_mark(validate: Validate, text: str, expected: str) -> Outcome:
    """`validate` exits 1 and names the marked line, once, with a message holding `expected`."""
    path, outcome = validate(text)
    assert outcome.code == 1, outcome
    problems = outcome.problems(path)
    matching = [line for line, message in problems if expected in message]
    assert matching == [marked_line(text)], problems
    assert outcome.out == ""  # no table for a refused catalog
    return outcome


def assert_warned_at_mark(validate: Validate, text: str, expected: str) -> Outcome:
    """`validate` exits 0 with one warning, `expected`, on the marked line."""
    path, outcome = validate(text)
    assert outcome.code == 0, outcome
    assert outcome.problems(path) == [(marked_line(text), f"{expected} (warning)")]
    return outcome
