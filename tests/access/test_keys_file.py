"""The keys file, the `keys add` command, finding a request's key, the token bucket, serve's flag."""

from __future__ import annotations

import stat
import textwrap
from pathlib import Path

import pytest
import structlog
import yaml

from router.access.auth import announce
from router.access.keys import KeysFileError, KeyStore, hash_key, presented_key, read_keys_file
from router.catalog import parse_catalog
from router.cli import main as cli
from router.limits.local import TokenBucket
from router.settings import RouterSettings
from tests.access.support import CATALOG, Keyed, keys_add

HASH = "a" * 64


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keys.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def catalog():  # type: ignore[no-untyped-def]
    return parse_catalog(textwrap.dedent(CATALOG), "catalog.yaml").catalog


# the keys add round trip -----------------------------------------------------


@pytest.mark.asyncio(loop_scope="module")
async def test_keys_add_prints_the_key_once_and_stores_only_its_hash(keyed: Keyed) -> None:
    text = keyed.file.read_text()
    for name, key in keyed.keys.items():
        output = keyed.outputs[name]
        assert output.stdout == key + "\n"  # the key, once, alone on stdout
        assert key not in output.stderr
        assert key not in text
        assert hash_key(key) in text
    assert stat.S_IMODE(keyed.file.stat().st_mode) == 0o600
    entries = {e["name"]: e for e in yaml.safe_load(text)["keys"]}
    assert entries["team"]["models"] == ["gpt-4o-mini"]
    assert entries["limited"]["rate_limit"] == {"requests_per_minute": 1.0, "burst": 2}
    assert entries["admin"]["admin"] is True
    # and the printed key works
    async with keyed.fleet.session.get(keyed.url + "/v1/models", headers=keyed.auth("meter")) as response:
        assert response.status == 200


def test_keys_add_refuses_a_duplicate_name_and_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    assert keys_add(path, "a")[0] == 0
    before = path.read_text()
    code, output = keys_add(path, "a")
    assert code == 1 and "a key named 'a' exists already" in output.stderr and output.stdout == ""
    assert path.read_text() == before
    code, output = keys_add(path, "b", "--burst", "3")
    assert code == 1 and "--burst needs --rate-limit" in output.stderr
    bad = write(tmp_path, "keys: [{name: x}]\n")
    code, output = keys_add(bad, "c")
    assert code == 1 and "key 'x' key_sha256" in output.stderr


# loading the keys file ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("keys: [\n  {name: a, key_sha256: 12}\n", "invalid YAML"),
        ("- a\n", "expected a mapping with a 'keys:' list"),
        ("keys:\n  - {name: a, key_sha256: zz}\n", "key 'a' key_sha256: must be the 64 hex digits of a sha256 digest"),
        (f"keys:\n  - {{name: a, key_sha256: {HASH}, color: red}}\n", "key 'a' color: Extra inputs are not permitted"),
        (f"keys:\n  - {{name: a, key_sha256: {HASH}}}\n  - {{name: a, key_sha256: {'b' * 64}}}\n", "key name 'a' appears twice"),
        (f"keys:\n  - {{name: a, key_sha256: {HASH}}}\n  - {{name: b, key_sha256: {HASH}}}\n", "same key_sha256"),
        (f"keys:\n  - {{name: a, key_sha256: {HASH}, rate_limit: {{requests_per_minute: 0}}}}\n", "key 'a' rate_limit.requests_per_minute"),
        (f"keys:\n  - {{name: a, key_sha256: {HASH}, models: llama}}\n", "key 'a' models"),
    ],
)
def test_a_bad_keys_file_is_refused_with_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(KeysFileError) as caught:
        read_keys_file(path)
    assert str(caught.value).startswith(str(path))
    assert message in str(caught.value)


def test_a_missing_file_and_an_unknown_model_are_refused(tmp_path: Path) -> None:
    with pytest.raises(KeysFileError, match="cannot read the keys file"):
        read_keys_file(tmp_path / "nope.yaml")
    path = write(tmp_path, f"keys:\n  - {{name: a, key_sha256: {HASH}, models: [llama3.2:3b, mistral]}}\n")
    with pytest.raises(KeysFileError, match="key 'a': model 'mistral' is not in the catalog"):
        KeyStore.load(path, catalog())


def test_an_empty_file_means_no_key_is_valid(tmp_path: Path) -> None:
    store = KeyStore.load(write(tmp_path, ""), catalog())
    assert store.keys == [] and store.find("anything") is None


def test_the_store_finds_a_key_by_its_hash_and_resolves_its_allowlist(tmp_path: Path) -> None:
    path = write(tmp_path, f"keys:\n  - {{name: a, key_sha256: {hash_key('secret')}, models: [GPT-4o-mini]}}\n  - {{name: b, key_sha256: {HASH}}}\n")
    cat = catalog()
    store = KeyStore.load(path, cat)
    found = store.find("secret")
    assert found is not None and found.name == "a" and not found.admin
    assert found.allowed_models is not None
    assert found.allows(cat.resolve("llama3.2:3b"))  # type: ignore[arg-type]
    assert not found.allows(cat.resolve("qwen2.5:7b"))  # type: ignore[arg-type]
    assert store.find("secreT") is None and store.find("") is None
    assert store.find("\udcff") is None and store.find("\ud800") is None  # undecodable header bytes do not crash
    assert store.find("secret") is found  # verified once, then looked up
    assert "secret" in store._verified and "secreT" not in store._verified  # wrong guesses are never cached


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({"Authorization": "Bearer abc"}, "abc"),
        ({"Authorization": "bearer  abc "}, "abc"),
        ({"x-api-key": "abc"}, "abc"),
        ({"Authorization": "Basic abc", "x-api-key": "def"}, "def"),
        ({"Authorization": "Bearer "}, None),
        ({"x-api-key": " "}, None),
        ({}, None),
    ],
)
def test_presented_key(headers: dict[str, str], key: str | None) -> None:
    assert presented_key(headers) == key


def test_token_bucket_allows_a_burst_then_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=0.5, capacity=2, updated=100.0)
    assert bucket.take(100.0) == 0.0 and bucket.take(100.0) == 0.0
    assert bucket.take(100.0) == pytest.approx(2.0)
    assert bucket.take(101.0) == pytest.approx(1.0)
    assert bucket.take(102.0) == 0.0
    assert bucket.take(1000.0) == 0.0 and bucket.take(1000.0) == 0.0 and bucket.take(1000.0) > 0  # never above capacity


# serve and settings --------------------------------------------------------------


def test_keys_file_from_flag_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_API_KEYS_FILE", "/env/keys.yaml")
    assert RouterSettings.load({}).api_keys_file == "/env/keys.yaml"
    assert RouterSettings.load({}, api_keys_file="/flag/keys.yaml").api_keys_file == "/flag/keys.yaml"


def test_serve_refuses_a_bad_keys_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("router.server.command.configure_logging", lambda *args: None)  # keep the tests' logging
    catalog_file = tmp_path / "catalog.yaml"
    catalog_file.write_text(textwrap.dedent(CATALOG))
    bad = write(tmp_path, "keys:\n  - {name: a, key_sha256: nope}\n")
    assert cli(["serve", str(catalog_file), "--port", "0", "--api-keys", str(bad)]) == 1
    assert f"{bad}: key 'a' key_sha256" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("host", "keys_file", "event", "level"),
    [
        ("127.0.0.1", None, "access_open", "info"),
        ("localhost", None, "access_open", "info"),
        ("::1", None, "access_open", "info"),
        ("0.0.0.0", None, "access_open_to_network", "warning"),
        ("10.1.2.3", None, "access_open_to_network", "warning"),
        ("0.0.0.0", "keys.yaml", "api_keys_required", "info"),
    ],
)
def test_start_says_whether_the_router_is_open(host: str, keys_file: str | None, event: str, level: str) -> None:
    with structlog.testing.capture_logs() as logs:
        announce(host, keys_file, 0)
    assert [(entry["event"], entry["log_level"]) for entry in logs] == [(event, level)]
