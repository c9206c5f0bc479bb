"""What the access tests share: a catalog, keys made through the `keys add` CLI, clients with keys."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ollama
import openai
from prometheus_client.parser import text_string_to_metric_families

from router.cli import main as cli
from tests.harness import RouterFleet, catalog_yaml

CATALOG = catalog_yaml(
    "a",
    "q",
    models={
        "llama3.2:3b": "containers: [a], aliases: [gpt-4o-mini], fallback: [qwen2.5:7b]",
        "qwen2.5:7b": "containers: [q], aliases: [gpt-4o]",
    },
)
LLAMA = "llama3.2:3b"
QWEN = "qwen2.5:7b"
MESSAGES = [{"role": "user", "content": "Say hello"}]
MAX_BODY = 64 * 1024

# name -> `keys add` arguments after the name
KEY_SPECS: dict[str, list[str]] = {
    "admin": ["--admin"],
    "team": ["--models", "gpt-4o-mini"],  # an alias: allows llama3.2:3b under every name
    "limited": ["--rate-limit", "1", "--burst", "2"],
    "fast": ["--rate-limit", "120", "--burst", "1"],  # a token every 0.5 s
    "other": [],
    "meter": [],
}


@dataclass
class AddOutput:
    key: str
    stdout: str
    stderr: str


def keys_add(file: Path, name: str, *args: str) -> tuple[int, AddOutput]:
    """`ollama-router keys add NAME ARGS --file FILE`, in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli(["keys", "add", name, *args, "--file", str(file)])
    return code, AddOutput(out.getvalue().strip(), out.getvalue(), err.getvalue())


def make_keys(file: Path, specs: dict[str, list[str]]) -> dict[str, str]:
    """Keys made by the `keys add` CLI into `file`: name -> the secret it printed once."""
    keys = {}
    for name, args in specs.items():
        code, output = keys_add(file, name, *args)
        assert code == 0, output.stderr
        keys[name] = output.key
    return keys


@dataclass
class Keyed:
    """A router that requires keys, and the keys the CLI made for it."""

    fleet: RouterFleet
    file: Path
    keys: dict[str, str]
    outputs: dict[str, AddOutput]

    @property
    def url(self) -> str:
        return self.fleet.url

    def openai(self, who: str | None, **kwargs: Any) -> openai.AsyncOpenAI:
        key = self.keys.get(who, who or "")
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, **kwargs)

    def ollama(self, who: str | None) -> ollama.AsyncClient:
        headers = {"Authorization": f"Bearer {self.keys.get(who or '', who)}"} if who else {}
        return ollama.AsyncClient(host=self.url, headers=headers)

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics, by (name, sorted labels)."""
        async with self.fleet.session.get(self.url + "/metrics", headers=self.auth("admin")) as response:
            assert response.status == 200, await response.text()
            text = await response.text()
        return parse_metrics(text)


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def sample(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
