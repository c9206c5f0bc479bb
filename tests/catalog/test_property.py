"""Random and mutated catalogs either load or fail with CatalogError whose every
problem renders as `<file>:<positive line>: <message>`; never another exception."""

from __future__ import annotations

import contextlib
import copy
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router import cli
from router.catalog.loader import CatalogError, Problem, parse_catalog
from tests.catalog.support import BASE, EXAMPLES, PROBLEM_LINE

FILE = "catalog/mutated.yaml"
SEEDS = [BASE, *(p.read_text(encoding="utf-8") for p in EXAMPLES)]
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Path_ = tuple[Any, ...]


def _nodes(data: Any, prefix: Path_ = ()) -> Iterator[Path_]:
    """Every path into a parsed document: mapping keys and list indexes."""
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        yield (*prefix, key)
        yield from _nodes(value, (*prefix, key))


def _known_words() -> list[str]:
    """Keys and scalars of the seed catalogs: mutations that reuse them make near-valid catalogs."""
    words: set[str] = set()
    for seed in SEEDS:
        data = yaml.safe_load(seed)
        for path in _nodes(data):
            words.add(str(path[-1]))
            value = _get(data, path)
            if isinstance(value, str):
                words.add(value)
    return sorted(words)


def _get(data: Any, path: Path_) -> Any:
    for part in path:
        data = data[part]
    return data


WORDS = _known_words()
SEED_DATA = [yaml.safe_load(seed) for seed in SEEDS]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(WORDS),
    st.sampled_from(["", "-1", "300", "-1m", "24h", "0", "http://", "a:b:c", "::", "/x", "~", "1e3", "-", "*"]),
)
KEYS = st.one_of(st.sampled_from(WORDS), st.text(max_size=12))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=8,
)


def _swap_type(value: Any) -> Any:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return int(value) if value.lstrip("-").isdigit() else [value]
    if isinstance(value, list):
        return value[0] if value else {}
    if isinstance(value, dict):
        return list(value)
    return ""


def _typo(key: str, draw: st.DrawFn) -> str:
    if not key:
        return "x"
    at = draw(st.integers(0, len(key) - 1))
    return key[:at] + key[at + 1 :]


@st.composite
def structural_mutants(draw: st.DrawFn) -> str:
    """A seed catalog, parsed, with a few keys deleted, renamed or values replaced, dumped again."""
    data = copy.deepcopy(draw(st.sampled_from(SEED_DATA)))
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_nodes(data))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _get(data, path[:-1]), path[-1]
        op = draw(st.sampled_from(["delete", "rename", "typo", "replace", "swap", "reuse"]))
        if op == "delete":
            del parent[key]
        elif op in ("rename", "typo") and isinstance(parent, dict):
            new_key = draw(KEYS) if op == "rename" else _typo(str(key), draw)
            parent[new_key] = parent.pop(key)
        elif op == "replace":
            parent[key] = draw(VALUES)
        elif op == "swap":
            parent[key] = _swap_type(parent[key])
        else:  # another node's value here: names of containers and models in the wrong places
            parent[key] = copy.deepcopy(_get(data, draw(st.sampled_from(paths)))) if draw(st.booleans()) else draw(st.sampled_from(WORDS))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


JUNK = st.text(alphabet=st.sampled_from(list(" \t:-[]{}\"'#&*!|>?,%@`\\~.0aZ\u00e9\u2028\r")), max_size=24)


@st.composite
def text_mutants(draw: st.DrawFn) -> str:
    """A seed catalog's text with junk lines, deleted or repeated lines, bad indentation, truncation."""
    lines = draw(st.sampled_from(SEEDS)).splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(lines)))
        op = draw(st.sampled_from(["junk", "delete", "repeat", "indent", "dedent", "truncate"]))
        if op == "junk":
            lines.insert(at, " " * draw(st.integers(0, 6)) + draw(JUNK) + "\n")
        elif lines and at < len(lines):
            if op == "delete":
                del lines[at]
            elif op == "repeat":
                lines.insert(at, lines[at])
            elif op == "indent":
                lines[at] = " " * draw(st.integers(1, 3)) + lines[at]
            elif op == "dedent":
                lines[at] = lines[at].lstrip(" ")
            else:
                lines = [*lines[:at], lines[at][:draw(st.integers(0, len(lines[at])))]]
    return "".join(lines)


def assert_renders(problem: Problem, text: str) -> None:
    rendered = str(problem)
    assert len(rendered.splitlines()) == 1, f"one problem printed on several lines: {rendered!r}"
    match = PROBLEM_LINE.match(rendered)
    assert match, f"not file:line: message: {rendered!r}"
    assert match["file"] == FILE
    assert 1 <= int(match["line"]) <= len(text.splitlines()) + 1, problem


def check(text: str) -> None:
    try:
        result = parse_catalog(text, FILE)
    except CatalogError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert_renders(problem, text)
    else:
        for warning in result.warnings:
            assert_renders(warning, text)


@PROPERTY
@given(structural_mutants())
def test_structurally_mutated_catalogs(text: str) -> None:
    check(text)


@PROPERTY
@given(text_mutants())
def test_textually_mutated_catalogs(text: str) -> None:
    check(text)


@PROPERTY
@given(st.one_of(st.text(max_size=200), VALUES.map(lambda v: yaml.safe_dump(v, allow_unicode=True))))
def test_random_documents(text: str) -> None:
    check(text)


@settings(max_examples=30, deadline=None)
@given(st.one_of(structural_mutants(), text_mutants()))
def test_validate_command_never_shows_a_traceback(text: str) -> None:
    """The same inputs through `ollama-router validate`: exit 0 or 1, stderr only file:line lines."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(text, encoding="utf-8")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["validate", str(path)])
    assert code in (0, 1)
    for line in err.getvalue().splitlines():
        match = PROBLEM_LINE.match(line)
        assert match and match["file"] == str(path), line
    assert (code == 0) == bool(out.getvalue())


HOSTILE: list[tuple[str, str, int]] = [
    ("recursive-anchor", "version: 1\ncontainers: &c\n  a: *c\nmodels: {}\n", 3),
    ("alias-bomb", "a: &a [1,1,1,1,1,1,1,1,1,1]\n"
     + "".join(f"{n}: &{n} [{', '.join(['*' + p] * 10)}]\n" for p, n in zip("abcdefg", "bcdefgh", strict=False)), 1),
    ("deep-nesting", "version: " + "[" * 1000 + "]" * 1000 + "\n", 1),
    ("bad-int-tag", "version: 1\ncontainers: {}\nmodels: {}\ndefaults: {num_parallel: !!int four}\n", 4),
    ("bad-timestamp-tag", "version: !!timestamp never\n", 1),
    ("python-tag", "version: 1\ncontainers: !!python/object:os.system {}\n", 2),
    ("unhashable-key", "version: 1\n? [a, b]\n: 1\n", 2),
    ("null-key", "version: 1\ncontainers: {}\nmodels:\n  ~: {containers: []}\n", 4),
    ("bool-key", "version: 1\nmodels: {}\ncontainers:\n  a: {port: 1}\n  yes: {port: 2}\n", 5),
    ("null-key-twice", "version: 1\ncontainers: {}\nmodels:\n  ~: {}\n  null: {}\n", 5),
    ("nul-character", "version: 1\ncontainers:\n  a\x00: {}\n", 3),
    ("line-break-in-name", 'version: 1\ncontainers: {}\nmodels:\n  "a\\nb\\u2028c": {containers: [x]}\n', 4),
    ("crlf", BASE.replace("\n", "\r\n").replace("gpus: [1]", "gpu: [1]"), 9),
]


@pytest.mark.parametrize(("text", "line"), [(t, n) for _, t, n in HOSTILE], ids=[i for i, _, _ in HOSTILE])
def test_hostile_yaml_is_refused_at_its_line(text: str, line: int) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text, FILE)
    for problem in caught.value.problems:
        assert_renders(problem, text)
    assert caught.value.problems[0].line == line, caught.value.problems


def test_seeds_are_valid() -> None:
    """Mutations start from catalogs that load."""
    for seed in SEEDS:
        parse_catalog(seed, FILE)
