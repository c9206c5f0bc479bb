"""Metric values move as requests flow: scrape /metrics before and after."""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
from pathlib import Path

import ollama
import openai
import pytest
from prometheus_client import generate_latest

from router.catalog import parse_catalog
from router.fleet.fleet import Fleet
from router.http.record import Record
from router.server.metrics import RouterMetrics, tail_stats
from router.server.window import Window
from tests.access.support import CATALOG, LLAMA, MESSAGES, QWEN, Keyed, parse_metrics, sample
from tests.harness import catalog_yaml, fleet_of, router_fleet

P = "ollama_router_"


@pytest.mark.asyncio(loop_scope="module")
async def test_metrics_move_as_requests_flow(keyed: Keyed) -> None:
    before = await keyed.metrics()
    await keyed.openai("meter").chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    stream = await keyed.openai("meter").chat.completions.create(
        model=LLAMA, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    assert [chunk async for chunk in stream]
    assert [part async for part in await keyed.ollama("meter").chat(model=QWEN, messages=MESSAGES, stream=True)]
    with pytest.raises(openai.AuthenticationError):
        await keyed.openai("wrong").models.list()
    with pytest.raises(ollama.ResponseError):
        await keyed.ollama("meter").chat(model="no-such-model", messages=MESSAGES)
    after = await keyed.metrics()

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    requests = P + "requests_total"
    assert moved(requests, model=LLAMA, container="a", status="200", api="openai") == 2
    assert moved(requests, model=QWEN, container="q", status="200", api="ollama") == 1
    assert moved(requests, model="", container="", status="401", api="openai") == 1
    assert moved(requests, model="", container="", status="404", api="ollama") == 1  # a client's name is never a label
    assert moved(requests, model="", container="", status="200", api="router") == 1  # the first scrape
    assert moved(P + "request_duration_seconds_count", api="openai", model=LLAMA) == 2
    assert moved(P + "time_to_first_token_seconds_count", model=LLAMA) == 1  # the streamed one
    assert moved(P + "time_to_first_token_seconds_count", model=QWEN) == 1
    assert moved(P + "output_tokens_per_second_count", model=QWEN) == 1  # Ollama's eval stats
    assert moved(P + "output_tokens_per_second_sum", model=QWEN) > 0
    assert moved(P + "queue_wait_seconds_count", container="a") == 2
    assert moved(P + "overhead_seconds_count") == 3
    # usage of the non-streamed answer, of the stream with include_usage, and Ollama's counts
    assert moved(P + "prompt_tokens_total", key="meter") > 0
    assert moved(P + "completion_tokens_total", key="meter") >= 3 * 24 - 3
    for container in ("a", "q"):
        assert sample(after, P + "backend_up", container=container) == 1
        assert sample(after, P + "in_flight", container=container) == 0
        assert sample(after, P + "queue_depth", container=container) == 0


def _metrics() -> tuple[RouterMetrics, Fleet]:
    fleet = fleet_of(parse_catalog(textwrap.dedent(CATALOG), "catalog.yaml").catalog, max_queue=4)
    return RouterMetrics(fleet, events=fleet.events, window=Window(), cold_load_threshold=1.0), fleet


def _served(**fields: object) -> Record:
    record = Record("id", "ollama", "POST", "/api/chat", model=LLAMA, served_model=LLAMA, container="a", attempts=1)
    record.ttfb = 0.01
    for name, value in fields.items():
        setattr(record, name, value)
    return record


def test_fallbacks_and_cold_loads_are_counted() -> None:
    metrics, fleet = _metrics()
    cold = b'{"done":true,"load_duration":2500000000,"prompt_eval_count":3,"eval_count":10,"eval_duration":500000000}\n'
    warm = cold.replace(b"2500000000", b"1000")
    metrics.observe(_served(tail=cold, key_name="k"), 200, "ollama", "application/x-ndjson", 1.0)
    metrics.observe(_served(tail=warm, served_model=QWEN, container="q", fallback_from=LLAMA, fallback_reason="no_container"), 200, "ollama", "application/x-ndjson", 1.0)
    samples = parse_metrics(_scrape(metrics))
    assert sample(samples, P + "cold_loads_total", model=LLAMA, container="a") == 1
    assert sample(samples, P + "cold_loads_total", model=QWEN, container="q") == 0
    assert sample(samples, P + "fallbacks_total", **{"from": LLAMA, "to": QWEN, "reason": "no_container"}) == 1
    assert sample(samples, P + "output_tokens_per_second_sum", model=LLAMA) == pytest.approx(20.0)
    assert sample(samples, P + "prompt_tokens_total", key="k") == 3
    assert sample(samples, P + "completion_tokens_total", key="anonymous") == 10
    # the same answers in the console's event list and last-minute window
    assert [(e.kind, e.fields) for e in fleet.events] == [
        ("cold_load", {"model": LLAMA, "container": "a", "load_seconds": 2.5})
    ]
    window = metrics.window.figures()
    assert window["models"][LLAMA] == {
        "requests": 1, "errors": 0, "fallbacks": 1, "cold_loads": 1, "tokens": 10, "requests_per_s": 1.0,
        "tokens_per_s": 10.0, "ttft_p50": 0.01, "ttft_p95": 0.01, "speed_p50": 20.0,
    }
    assert window["models"][QWEN]["requests"] == 1 and window["models"][QWEN]["fallbacks"] == 0
    assert window["containers"]["q"]["fallbacks"] == 1 and window["total"]["cold_loads"] == 1


async def test_fleet_gauges_are_read_at_scrape_time() -> None:
    metrics, fleet = _metrics()
    state = fleet.containers["a"]
    fleet.probe_passed(state, version="0.32.15", loaded={}, tags=[])
    while await state.slots.try_acquire("k"):
        pass  # every slot taken (num_parallel 4)
    waiting = [asyncio.create_task(state.slots.wait("k", 10)) for _ in range(2)]
    await asyncio.sleep(0)
    samples = parse_metrics(_scrape(metrics))
    assert sample(samples, P + "backend_up", container="a") == 1
    assert sample(samples, P + "backend_up", container="q") == 0
    assert sample(samples, P + "in_flight", container="a") == 4
    assert sample(samples, P + "queue_depth", container="a") == 2
    for task in waiting:
        task.cancel()


@pytest.mark.parametrize(
    ("tail", "stats"),
    [
        (b'..."usage":{"prompt_tokens":8,"completion_tokens":24,"total_tokens":32}}\n\ndata: [DONE]\n\n', {b"prompt_tokens": 8, b"completion_tokens": 24}),
        (b'"content":"eval_count"}', {}),  # text that merely mentions a name
        (b'{"done":true,"prompt_eval_count":8,"eval_count":24,"eval_duration":1000,"context":[1]}\n', {b"prompt_eval_count": 8, b"eval_count": 24, b"eval_duration": 1000}),
        (b"x" * 5000 + b'],"load_duration":7,"prompt_eval_count":3}', {b"load_duration": 7, b"prompt_eval_count": 3}),  # a large body's end
        (b'{"usage": {"prompt_tokens": true}, "eval_count": "5"}', {}),  # only integers count
        (b"", {}),
    ],
)
def test_tail_stats(tail: bytes, stats: dict[bytes, int]) -> None:
    assert tail_stats(tail) == stats


def _scrape(metrics: RouterMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_the_grafana_dashboard_uses_only_exported_metrics() -> None:
    dashboard = json.loads((Path(__file__).parents[2] / "docs" / "grafana-dashboard.json").read_text())
    used = set(re.findall(r"ollama_router_[a-z_]+", json.dumps(dashboard)))
    metrics, _ = _metrics()
    metrics.observe(_served(tail=b'"load_duration":9000000000,"prompt_eval_count":1,"eval_count":1,"eval_duration":1', fallback_from=QWEN), 200, "ollama", "application/x-ndjson", 1.0)
    exported = {s.name for family in metrics.registry.collect() for s in family.samples} | {f.name for f in metrics.registry.collect()}
    assert used and used <= exported, used - exported


FALLBACK_CATALOG = catalog_yaml(
    "a", "q", models={"llama3.2:3b": "containers: [a], fallback: [qwen2.5:7b]", "qwen2.5:7b": "containers: [q]"}
)


@pytest.mark.asyncio(loop_scope="module")
async def test_a_fallback_is_counted_as_it_happens() -> None:
    async with router_fleet(FALLBACK_CATALOG, settings={"failure_threshold": 5}) as fleet:
        async def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            async with fleet.session.get(fleet.url + "/metrics") as response:  # open: no keys file
                return parse_metrics(await response.text())

        before = await scrape()
        await fleet.backends["a"].add_fault("busy", count=1)
        async with fleet.session.post(fleet.url + "/api/generate", json={"model": LLAMA, "prompt": "hi", "stream": False}) as response:
            assert response.status == 200 and response.headers["X-Router-Model"] == QWEN
        after = await scrape()
    labels = {"from": LLAMA, "to": QWEN, "reason": "http_503"}
    assert sample(after, P + "fallbacks_total", **labels) - sample(before, P + "fallbacks_total", **labels) == 1
    assert sample(after, P + "requests_total", model=QWEN, container="q", status="200", api="ollama") == 1
