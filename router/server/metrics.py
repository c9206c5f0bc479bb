"""Prometheus metrics (prefix `ollama_router_`), served at `GET /metrics`.

Cheap on the request path: one middleware observes each request once, from
its `Record`, after the answer has gone out (no per-chunk work). Token counts
and rates come from the answer's last bytes (`Record.tail`), where Ollama puts
its eval stats and OpenAI its `usage`. Fleet gauges (backend_up, in_flight,
queue_depth) are read from the fleet state at scrape time by a collector.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from router import wire
from router.access.auth import Handler, Middleware
from router.catalog import Catalog
from router.fleet.state import UP, Fleet
from router.server.context import RECORD
from router.server.errors import RouterError
from router.server.proxy import Record

PREFIX = "ollama_router_"
METRICS_KEY = "metrics"
ROUTER_PATHS = frozenset({"/healthz", "/readyz", "/router/status", "/metrics"})
CLIENT_LEFT = 499
TAIL_SCAN_BYTES = 512
STATS = re.compile(
    rb'"(eval_count|eval_duration|prompt_eval_count|load_duration|prompt_tokens|completion_tokens)":\s*(\d+)'
)
STREAMED = (wire.NDJSON, wire.SSE)

disable_created_metrics()  # no *_created series: half the scrape, nothing dashboards use

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
RATE_BUCKETS = (1, 2.5, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000)


def tail_stats(tail: bytes) -> dict[bytes, int]:
    """Ollama's eval stats / OpenAI's usage numbers found in an answer's last bytes."""
    return {m.group(1): int(m.group(2)) for m in STATS.finditer(tail[-TAIL_SCAN_BYTES:])}


class FleetCollector(Collector):
    """backend_up, in_flight and queue_depth per container, read when scraped."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(PREFIX + "backend_up", "1 when the container is up (health probes and passive signals)", labels=["container"])
        in_flight = GaugeMetricFamily(PREFIX + "in_flight", "requests the router has in flight on the container", labels=["container"])
        queued = GaugeMetricFamily(PREFIX + "queue_depth", "requests waiting for a slot on the container", labels=["container"])
        for state in self.fleet.containers.values():
            up.add_metric([state.name], 1.0 if state.state == UP else 0.0)
            in_flight.add_metric([state.name], float(state.in_flight))
            queued.add_metric([state.name], float(len(state.waiters)))
        yield up
        yield in_flight
        yield queued


class RouterMetrics:
    """One registry per app (tests run several routers in one process)."""

    def __init__(self, catalog: Catalog, fleet: Fleet, *, cold_load_threshold: float) -> None:
        self.catalog = catalog
        self.cold_load_ns = cold_load_threshold * 1e9
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.requests = Counter(PREFIX + "requests", "requests answered", ["model", "container", "status", "api"], registry=r)
        self.duration = Histogram(PREFIX + "request_duration_seconds", "time from request to the answer's last byte", ["api", "model"], buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram(PREFIX + "time_to_first_token_seconds", "time from request to the first streamed byte", ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.tokens_per_second = Histogram(PREFIX + "output_tokens_per_second", "generation speed (Ollama's eval_count / eval_duration)", ["model"], buckets=RATE_BUCKETS, registry=r)
        self.queue_wait = Histogram(PREFIX + "queue_wait_seconds", "time waiting for a container slot", ["container"], buckets=LATENCY_BUCKETS, registry=r)
        self.overhead = Histogram(PREFIX + "overhead_seconds", "router time before the first byte, less queue and container time", buckets=OVERHEAD_BUCKETS, registry=r)
        self.fallbacks = Counter(PREFIX + "fallbacks", "requests served by a fallback model", ["from", "to", "reason"], registry=r)
        self.cold_loads = Counter(PREFIX + "cold_loads", "answers whose load_duration was over the cold-load threshold", ["model", "container"], registry=r)
        self.prompt_tokens = Counter(PREFIX + "prompt_tokens", "prompt tokens, by API key", ["key"], registry=r)
        self.completion_tokens = Counter(PREFIX + "completion_tokens", "completion tokens, by API key", ["key"], registry=r)
        r.register(FleetCollector(fleet))
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _model_label(self, record: Record) -> str:
        if record.served_model is not None:
            return record.served_model
        if record.model is None:
            return ""
        model = self.catalog.resolve(record.model)  # never a client's free text as a label
        return model.tag if model is not None else ""

    def observe(self, record: Record, status: int, api: str, content_type: str, now: float) -> None:
        model = self._model_label(record)
        container = record.container or ""
        self._child(self.requests, model, container, str(status), api).inc()
        self._child(self.duration, api, model).observe(now - record.started)
        if record.attempts:
            self._child(self.queue_wait, container).observe(record.queue_wait)
        if record.ttfb is None:
            return
        self.overhead.observe(max(0.0, record.ttfb - record.queue_wait - record.upstream_wait))
        if content_type.startswith(STREAMED):
            self._child(self.ttft, model).observe(record.ttfb)
        if record.fallback_from is not None:
            self._child(self.fallbacks, record.fallback_from, model, record.fallback_reason or "").inc()
        if record.tail and status == 200:
            self._observe_stats(record, model, container, tail_stats(record.tail))

    def _observe_stats(self, record: Record, model: str, container: str, stats: dict[bytes, int]) -> None:
        if not stats:
            return
        key = record.key_name or "anonymous"
        prompt = stats.get(b"prompt_eval_count", stats.get(b"prompt_tokens"))
        completion = stats.get(b"eval_count", stats.get(b"completion_tokens"))
        if prompt:
            self._child(self.prompt_tokens, key).inc(prompt)
        if completion:
            self._child(self.completion_tokens, key).inc(completion)
            duration_ns = stats.get(b"eval_duration")
            if duration_ns:
                self._child(self.tokens_per_second, model).observe(completion * 1e9 / duration_ns)
        load_ns = stats.get(b"load_duration")
        if load_ns is not None and load_ns > self.cold_load_ns:
            self._child(self.cold_loads, model, container).inc()

    def middleware(self) -> Middleware:
        clock = time.perf_counter

        @web.middleware
        async def metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
            status = 500
            content_type = ""
            try:
                response = await handler(request)
                status = response.status
                content_type = response.headers.get("Content-Type", "")
                return response
            except RouterError as exc:
                status = exc.status
                raise
            except web.HTTPException as exc:
                status = exc.status
                raise
            except asyncio.CancelledError:
                status = CLIENT_LEFT
                raise
            finally:
                record = request[RECORD]
                api = "router" if request.path in ROUTER_PATHS else record.api
                status = CLIENT_LEFT if record.client_left else status
                self.observe(record, status, api, content_type, clock())

        return metrics

    async def handle(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
