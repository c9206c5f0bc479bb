"""Prometheus metrics (prefix `ollama_router_`), served at `GET /metrics`.

Cheap on the request path: the edge middleware hands each request's `Record`
here once, after the answer has gone out (no per-chunk work), into plain
series (`router.server.series`) and the console's last-minute window
(`router.server.window`); a cold load is also published as an event. Token counts and rates come from the answer's
last bytes (`Record.tail`), where Ollama puts its eval stats and the other APIs
their usage. Fleet gauges (backend_up, in_flight, queue_depth, ejected) are
read from the fleet's state at scrape time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import NamedTuple

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from router import wire
from router.events import EventHub
from router.fleet.fleet import Fleet
from router.fleet.routing import OUTCOMES, Policies
from router.fleet.state import Phase
from router.http.record import Record
from router.limits import Limits
from router.server.series import CounterSeries, HistogramSeries
from router.server.window import Window

PREFIX = "ollama_router_"
TAIL_SCAN_BYTES = 512
# the numbers read from an answer's tail; the leading quote keeps "eval_count" from matching "prompt_eval_count"
# (Ollama's native stats; OpenAI chat's usage; the Responses and Anthropic usage)
STAT_NAMES = (
    b"eval_count", b"eval_duration", b"prompt_eval_count", b"load_duration", b"prompt_tokens", b"completion_tokens",
    b"input_tokens", b"output_tokens",
)
STAT_NEEDLES = tuple((name, b'"' + name + b'":') for name in STAT_NAMES)
STAT_KEYS = tuple((name, name.decode()) for name in STAT_NAMES)
SSE_DONE = b"data: [DONE]"
PARSE_MAX_BYTES = 4096
DIGITS = re.compile(rb"\d+")  # compiled once; matched at one position
STREAMED = (wire.NDJSON, wire.SSE)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
RATE_BUCKETS = (1, 2.5, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000)


def tail_stats(tail: bytes) -> dict[bytes, int]:
    """Ollama's eval stats / the APIs' usage numbers from an answer's last bytes.

    The last JSON document (Ollama's final NDJSON line, the last SSE event
    before [DONE], a Responses `response.completed`, a small body whole) is
    parsed with orjson; when the tail holds only part of it (a large body), or
    it holds no numbers (Anthropic's closing `message_stop`), the numbers are
    looked up by name.
    """
    end = tail.rstrip()
    if end.endswith(SSE_DONE):
        end = end[: -len(SSE_DONE)].rstrip()
    line = end[end.rfind(b"\n") + 1 :]
    if line.startswith(b"data:"):
        line = line[5:]
    if len(line) <= PARSE_MAX_BYTES and line[:1] == b"{" and line[-1:] == b"}":  # raising is slow: only likely documents
        try:
            document = orjson.loads(line)
        except orjson.JSONDecodeError:
            pass
        else:
            numbers = _numbers(document) if isinstance(document, dict) else {}
            if numbers:
                return numbers
            # an Anthropic stream ends with message_stop: its usage is in the message_delta before
    return _scan(tail[-TAIL_SCAN_BYTES:])


def _numbers(document: dict[str, object]) -> dict[bytes, int]:
    usage = document.get("usage")
    if not isinstance(usage, dict):
        inner = document.get("response")  # a Responses event carries its response object
        usage = inner.get("usage") if isinstance(inner, dict) else None
    source = usage if isinstance(usage, dict) else document
    return {name: value for name, key in STAT_KEYS if type(value := source.get(key)) is int}


def _scan(tail: bytes) -> dict[bytes, int]:
    stats = {}
    for name, needle in STAT_NEEDLES:
        at = tail.rfind(needle)
        if at >= 0 and (digits := DIGITS.match(tail, at + len(needle))) is not None:
            stats[name] = int(digits.group())
    return stats


class AnswerStats(NamedTuple):
    """What the window needs from an answer's stats."""

    tokens: int  # output tokens
    speed: float | None  # output tokens per second of generation
    cold: bool  # its load_duration was over the cold-load threshold


NO_STATS = AnswerStats(0, None, False)


class FleetCollector(Collector):
    """backend_up, ejected, in_flight and queue_depth per container, read when scraped."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(PREFIX + "backend_up", "1 when the container is up (health probes and passive signals)", labels=["container"])
        in_flight = GaugeMetricFamily(PREFIX + "in_flight", "requests the router has in flight on the container", labels=["container"])
        queued = GaugeMetricFamily(PREFIX + "queue_depth", "requests waiting for a slot on the container", labels=["container"])
        ejected = GaugeMetricFamily(PREFIX + "ejected", "1 while the container is ejected (real requests failed on it)", labels=["container"])
        ejections = CounterMetricFamily(PREFIX + "ejections", "times the container was ejected", labels=["container"])
        for state in self.fleet.all_states():
            up.add_metric([state.name], 1.0 if state.routable else 0.0)
            in_flight.add_metric([state.name], float(state.in_flight))
            queued.add_metric([state.name], float(state.slots.queued))
            ejected.add_metric([state.name], 1.0 if state.phase is Phase.EJECTED else 0.0)
            ejections.add_metric([state.name], float(state.ejected_total))
        yield up
        yield in_flight
        yield queued
        yield ejected
        yield ejections


class LimitsCollector(Collector):
    """With Redis-held limits: the connection, the fallback, the losses (read when scraped)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    def collect(self) -> Iterator[Metric]:
        health = self.limits.health()
        if health.store == "local":
            return
        yield GaugeMetricFamily(PREFIX + "limits_store_up", "1 while the shared limits store (Redis) answers", value=float(health.shared))
        yield GaugeMetricFamily(
            PREFIX + "limits_fallback", "1 while this process applies its own limits in place of the lost store (fail open)",
            value=float(health.fallback),
        )
        yield CounterMetricFamily(PREFIX + "limits_store_losses", "times the connection to the limits store was lost", value=float(health.losses))


class AffinityCollector(Collector):
    """Placements of keyed requests per model and outcome, and the conversations remembered, read when scraped."""

    def __init__(self, policies: Policies) -> None:
        self.affinity = policies.affinity

    def collect(self) -> Iterator[Metric]:
        placements = CounterMetricFamily(
            PREFIX + "affinity", "placements of requests by conversation (prefix affinity), by outcome", labels=["model", "outcome"],
        )
        for counts in self.affinity.counts.values():
            for outcome in OUTCOMES:
                placements.add_metric([counts.tag, outcome], float(getattr(counts, outcome)))
        yield placements
        yield GaugeMetricFamily(PREFIX + "affinity_keys", "conversations remembered by prefix affinity", value=len(self.affinity.homes))


class RouterMetrics(Collector):
    """One registry per app (tests run several routers in one process)."""

    def __init__(
        self, fleet: Fleet, *, events: EventHub, window: Window, cold_load_threshold: float,
        limits: Limits | None = None, policies: Policies | None = None,
    ) -> None:
        self.fleet = fleet
        self.events = events
        self.window = window
        self.cold_load_ns = cold_load_threshold * 1e9
        self.requests = CounterSeries(PREFIX + "requests", "requests answered", ["model", "container", "status", "api"])
        self.duration = HistogramSeries(PREFIX + "request_duration_seconds", "time from request to the answer's last byte", ["api", "model"], LATENCY_BUCKETS)
        self.ttft = HistogramSeries(PREFIX + "time_to_first_token_seconds", "time from request to the first streamed byte", ["model"], LATENCY_BUCKETS)
        self.tokens_per_second = HistogramSeries(PREFIX + "output_tokens_per_second", "generation speed (Ollama's eval_count / eval_duration)", ["model"], RATE_BUCKETS)
        self.queue_wait = HistogramSeries(PREFIX + "queue_wait_seconds", "time waiting for a container slot", ["container"], LATENCY_BUCKETS)
        self.overhead = HistogramSeries(PREFIX + "overhead_seconds", "router time before the first byte, less queue and container time", [], OVERHEAD_BUCKETS)
        self.fallbacks = CounterSeries(PREFIX + "fallbacks", "requests answered by a fallback model", ["from", "to", "reason"])
        self.cold_loads = CounterSeries(PREFIX + "cold_loads", "answers whose load_duration was over the cold-load threshold", ["model", "container"])
        self.prompt_tokens = CounterSeries(PREFIX + "prompt_tokens", "prompt tokens, by API key", ["key"])
        self.completion_tokens = CounterSeries(PREFIX + "completion_tokens", "completion tokens, by API key", ["key"])
        self.pinned = CounterSeries(
            PREFIX + "pinned_requests", "native requests sent with the model's pinned num_ctx or shift instead of the client's", ["model"]
        )
        self.series = (
            self.requests, self.duration, self.ttft, self.tokens_per_second, self.queue_wait, self.overhead,
            self.fallbacks, self.cold_loads, self.prompt_tokens, self.completion_tokens, self.pinned,
        )
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self.registry.register(FleetCollector(fleet))
        if limits is not None:
            self.registry.register(LimitsCollector(limits))
        if policies is not None:
            self.registry.register(AffinityCollector(policies))

    def collect(self) -> Iterator[Metric]:
        for series in self.series:
            yield series.family()

    def configure(self, *, cold_load_threshold: float) -> None:
        self.cold_load_ns = cold_load_threshold * 1e9

    @property
    def fallbacks_total(self) -> int:
        """What `/router/status` shows: the same count as `fallbacks_total`."""
        return int(sum(self.fallbacks.values.values()))

    def observe(self, record: Record, status: int, api: str, content_type: str, now: float) -> None:
        model = record.served_model or record.model_tag or ""  # a catalog tag, never a client's free text
        container = record.container or ""
        self.requests.inc((model, container, str(status), api))
        self.duration.observe((api, model), now - record.started)
        if record.pinned is not None:
            self.pinned.inc((model,))
        if record.attempts:
            self.queue_wait.observe((container,), record.queue_wait)
        ttft = None
        answer = NO_STATS
        if record.ttfb is not None:
            self.overhead.observe((), max(0.0, record.ttfb - record.queue_wait - record.upstream_wait))
            if content_type.startswith(STREAMED):
                ttft = record.ttfb
                self.ttft.observe((model,), ttft)
            if record.fallback_from is not None:
                self.fallbacks.inc((record.fallback_from, model, record.fallback_reason or ""))
            if record.tail and status == 200:
                answer = self._observe_stats(record, model, container, tail_stats(record.tail))
        if model or container:  # a request that named a catalog model (not a probe, a scrape or an unknown name)
            failed = status == 429 or status >= 500 or record.stream_broken is not None
            self.window.add(model, container, failed, record.fallback_from, ttft, answer.tokens, answer.speed, answer.cold)

    def _observe_stats(self, record: Record, model: str, container: str, stats: dict[bytes, int]) -> AnswerStats:
        if not stats:
            return NO_STATS
        key = (record.key_name or "anonymous",)
        prompt = stats.get(b"prompt_eval_count", stats.get(b"prompt_tokens", stats.get(b"input_tokens")))
        completion = stats.get(b"eval_count", stats.get(b"completion_tokens", stats.get(b"output_tokens")))
        speed = None
        if prompt:
            self.prompt_tokens.inc(key, prompt)
        if completion:
            self.completion_tokens.inc(key, completion)
            duration_ns = stats.get(b"eval_duration")
            if duration_ns:
                speed = completion * 1e9 / duration_ns
                self.tokens_per_second.observe((model,), speed)
        load_ns = stats.get(b"load_duration", 0)
        cold = load_ns > self.cold_load_ns
        if cold:
            self.cold_loads.inc((model, container))
            self.events.publish("cold_load", model=model, container=container, load_seconds=round(load_ns / 1e9, 3))
        return AnswerStats(completion or 0, speed, cold)

    def after_request(self, record: Record, status: int, content_type: str) -> None:
        """Called by the edge middleware once per request, after its answer."""
        self.observe(record, status, record.api, content_type, time.perf_counter())

    def render(self) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
