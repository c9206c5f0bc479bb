"""The resolved catalog: defaults merged into containers, Ollama's tag
normalisation, case-insensitive lookup, aliases."""

from __future__ import annotations

import pytest

from router.catalog.loader import parse_catalog
from router.catalog.model import DEFAULT_IMAGE, DEFAULT_NUM_PARALLEL, Catalog
from tests.catalog.support import BASE, edit

MERGE = """\
version: 1
defaults:
  image: ollama/ollama:0.9.0
  num_parallel: 3
  keep_alive: 1h
  volumes: [models:/root/.ollama]
  env: {OLLAMA_FLASH_ATTENTION: "1", OLLAMA_KV_CACHE_TYPE: f16}
containers:
  plain: {gpus: [0], port: 11501}
  tuned:
    gpus: [1]
    port: 11502
    image: ollama/ollama:0.12.6
    num_parallel: 1
    keep_alive: 5m
    volumes: []
    env: {OLLAMA_KV_CACHE_TYPE: q8_0, OLLAMA_DEBUG: true}
models:
  llama3.2: {containers: [plain]}
  qwen2.5:7b: {containers: [tuned], keep_alive: -1}
"""


def load(text: str) -> Catalog:
    return parse_catalog(text, "c.yaml").catalog


def test_defaults_fill_a_container_that_sets_nothing() -> None:
    plain = load(MERGE).containers["plain"]
    assert plain.image == "ollama/ollama:0.9.0"
    assert plain.num_parallel == 3
    assert plain.keep_alive == "1h"
    assert plain.volumes == ("models:/root/.ollama",)
    assert dict(plain.env) == {"OLLAMA_FLASH_ATTENTION": "1", "OLLAMA_KV_CACHE_TYPE": "f16"}


def test_container_settings_win_and_env_is_merged_key_by_key() -> None:
    tuned = load(MERGE).containers["tuned"]
    assert tuned.image == "ollama/ollama:0.12.6"
    assert tuned.num_parallel == 1
    assert tuned.keep_alive == "5m"
    assert tuned.volumes == ()  # an explicit empty list is not replaced by the default
    assert dict(tuned.env) == {"OLLAMA_FLASH_ATTENTION": "1", "OLLAMA_KV_CACHE_TYPE": "q8_0", "OLLAMA_DEBUG": "1"}


def test_built_in_defaults_without_a_defaults_section() -> None:
    container = load(BASE.replace("defaults:\n  keep_alive: 24h\n", "")).containers["llama-a"]
    assert (container.image, container.num_parallel, container.network) == (DEFAULT_IMAGE, DEFAULT_NUM_PARALLEL, "host")
    assert (container.url, container.managed, container.gpus) == ("http://127.0.0.1:11501", True, (0,))


def test_remote_container_keeps_its_url_and_is_not_managed() -> None:
    remote = load(edit("    url: http://127.0.0.1:11434\n", "    url: http://127.0.0.1:11434/\n")).containers["remote"]
    assert (remote.url, remote.managed, remote.gpus) == ("http://127.0.0.1:11434", False, ())


def test_model_keep_alive_comes_from_model_then_its_first_container_then_defaults() -> None:
    catalog = load(MERGE)
    assert catalog.resolve("llama3.2").keep_alive == "1h"  # type: ignore[union-attr]
    assert catalog.resolve("qwen2.5:7b").keeps_forever  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "asked",
    ["llama3.2", "llama3.2:latest", "LLaMA3.2", "Llama3.2:LATEST", "library/llama3.2", " llama3.2 ",
     "registry.ollama.ai/library/llama3.2:latest"],
)
def test_lookup_normalises_the_tag_and_ignores_case(asked: str) -> None:
    model = load(MERGE).resolve(asked)
    assert model is not None and model.tag == "llama3.2:latest"


@pytest.mark.parametrize("asked", ["llama3.2:1b", "qwen2.5", "myorg/llama3.2", "bad name!", "", "llama3.2:"])
def test_lookup_of_other_names_finds_nothing(asked: str) -> None:
    assert load(MERGE).resolve(asked) is None


def test_catalog_models_are_keyed_and_shown_in_ollama_form() -> None:
    catalog = load(MERGE)
    assert sorted(m.tag for m in catalog.models.values()) == ["llama3.2:latest", "qwen2.5:7b"]


@pytest.mark.parametrize(("asked", "tag"), [("gpt-4o-mini", "llama3.2:3b"), ("GPT-4o-Mini", "llama3.2:3b"),
                                            ("gpt-4o", "qwen2.5:7b"), ("gpt-4o:latest", "qwen2.5:7b")])
def test_aliases_resolve_to_their_model(asked: str, tag: str) -> None:
    model = load(BASE).resolve(asked)
    assert model is not None and model.tag == tag


def test_fallbacks_and_containers_are_kept_in_order() -> None:
    model = load(edit("    fallback: [qwen2.5:7b]\n", "    fallback: [Qwen2.5:7B]\n")).resolve("llama3.2:3b")
    assert model is not None
    assert model.containers == ("llama-a", "llama-b")  # the first is the primary
    assert model.fallback == ("qwen2.5:7b",)  # spelled as the catalog names the model


def test_models_on_a_container() -> None:
    catalog = load(BASE)
    assert [m.tag for m in catalog.models_on("llama-b")] == ["llama3.2:3b"]
    assert catalog.models_on("nowhere") == []
