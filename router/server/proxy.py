"""Forward one request to a container of its model; stream the answer back.

Order of attempts: the model's containers (balancer order), then each
fallback model's. A container that fails before the first byte reaches the
client (connection error, 5xx, Ollama's 503 busy, no headers within
`ttft_timeout`: Ollama sends headers only with the first token) is reported
to the fleet and the next one is tried. Once a byte has gone out, never retry:
a stream that breaks upstream is ended the way its API ends a failed stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import structlog
from aiohttp import web

from router import wire
from router.catalog import Catalog, Model
from router.fleet.balancer import Balancer, ContainerGone, NoContainer, QueueFull, QueueTimeout
from router.fleet.state import ContainerState, Fleet
from router.server.errors import TooManyRequests, Unavailable
from router.server.upstream import ConnectFailed, UpstreamPool, UpstreamResponse, end_to_end_headers

log = structlog.get_logger("router.proxy")

# Statuses after which a sibling may do better. 404: the container lacks the
# model the catalog says it has (not pulled yet), which a sibling may have.
RETRYABLE = frozenset({404, 429, 500, 502, 503, 504})
# Ollama answers a request whose option has the wrong type with a 500
# (ollama-api.md 4.6): the client's fault, which no sibling would answer better
# and which says nothing of the container's health.
CLIENT_FAULT_500_PREFIX = b'{"error":"option \\"'
ENDED_WITH_ERROR = "stream ended with an error line"


class PassThroughResponse(web.StreamResponse):
    """Headers leave with the first body bytes, in one write.

    A plain StreamResponse sends its headers at `prepare()`, a write of their
    own: on a non-streamed answer that is two syscalls (and two wakeups of the
    client) where one does, about a quarter of the router's CPU per request.
    Ollama sends headers only with the first token, so a stream's headers are
    not held back by this either. (`_send_headers_immediately` is aiohttp's own
    switch, the one `web.Response` sets.)
    """

    _send_headers_immediately = False


@dataclass(slots=True)
class Record:
    """What one request did; read by the access log and the metrics."""

    request_id: str
    api: str
    method: str
    path: str
    model: str | None = None  # as the client asked
    served_model: str | None = None
    container: str | None = None
    status: int = 0
    bytes_out: int = 0
    ttfb: float | None = None
    queue_wait: float = 0.0
    attempts: int = 0
    fallback_from: str | None = None
    fallback_reason: str | None = None
    stream_broken: str | None = None
    client_left: bool = False
    error: str | None = None
    key_name: str | None = None
    tail: bytes = b""  # the answer's last bytes (where Ollama's eval stats and OpenAI's usage are)
    upstream_wait: float = 0.0  # waiting for containers' response headers, over all attempts
    started: float = field(default_factory=time.perf_counter)


@dataclass(slots=True)
class Failure:
    reason: str
    status: int | None = None
    content_type: str | None = None
    body: bytes | None = None
    final: bool = False  # the request's own fault: answer the client, try nothing else


class Proxy:
    def __init__(
        self, catalog: Catalog, fleet: Fleet, balancer: Balancer, *, ttft_timeout: float, connect_timeout: float = 2.0
    ) -> None:
        self.catalog = catalog
        self.fleet = fleet
        self.balancer = balancer
        self.ttft_timeout = ttft_timeout
        self.stream_failures = 0
        self.fallbacks = 0
        self.connect_timeout = connect_timeout
        self._plans: dict[str, list[Model]] = {}
        self._pools: dict[str, UpstreamPool] = {}  # by container: keep-alive connections of the hot path

    def close(self) -> None:
        """Close the hot path's upstream connections (at shutdown)."""
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    def plan(self, model: Model) -> list[Model]:
        """The model, then its fallbacks (computed once per model: the catalog never changes)."""
        plan = self._plans.get(model.tag)
        if plan is None:
            plan = [model]
            for tag in model.fallback:
                target = self.catalog.resolve(tag)
                if target is not None and target not in plan:
                    plan.append(target)
            self._plans[model.tag] = plan
        return plan

    async def forward(
        self,
        request: web.Request,
        record: Record,
        path: str,
        payload: dict[str, Any],
        body: bytes,
        model: Model,
        *,
        model_field: str = "model",
        allowed: Callable[[Model], bool] | None = None,
    ) -> web.StreamResponse:
        """`allowed`: the caller's model allowlist; fallbacks outside it are skipped."""
        last_failure: Failure | None = None
        queue_refused = False
        first_reason: str | None = None
        for target in self.plan(model):
            if target is not model and allowed is not None and not allowed(target):
                continue
            if target is not model and first_reason is not None:
                record.fallback_from = model.tag
                record.fallback_reason = first_reason
                self.fallbacks += 1
                log.info("fallback", request_id=record.request_id, model=model.tag, to=target.tag, reason=first_reason)
            upstream_body = body if payload.get(model_field) == target.tag else _rewrite(payload, model_field, target.tag)
            tried: set[str] = set()
            while True:
                waited_from = time.perf_counter()
                try:
                    state = await self.balancer.acquire(target, tried)
                except NoContainer:
                    first_reason = first_reason or "no_container"
                    break
                except (QueueFull, QueueTimeout) as exc:
                    queue_refused = True
                    first_reason = first_reason or type(exc).__name__
                    break
                except ContainerGone:
                    continue
                finally:
                    record.queue_wait += time.perf_counter() - waited_from
                tried.add(state.name)
                record.attempts += 1
                try:
                    outcome = await self._attempt(request, record, state, target, path, upstream_body)
                finally:
                    state.release()
                if isinstance(outcome, web.StreamResponse):
                    return outcome
                if outcome.final:
                    return self._upstream_error(record, outcome)
                first_reason = first_reason or outcome.reason
                if outcome.status is not None:
                    last_failure = outcome
                log.warning(
                    "attempt_failed",
                    request_id=record.request_id,
                    container=state.name,
                    model=target.tag,
                    reason=outcome.reason,
                )
        return self._nothing_served(record, model, last_failure, queue_refused)

    def _nothing_served(
        self, record: Record, model: Model, last_failure: Failure | None, queue_refused: bool
    ) -> web.StreamResponse:
        if last_failure is not None and last_failure.body is not None and last_failure.status is not None:
            return self._upstream_error(record, last_failure)
        if queue_refused:
            raise TooManyRequests(
                f"all containers of model '{model.tag}' are at capacity and their queues are full; retry later",
                retry_after=1,
            )
        raise Unavailable(f"no container can serve model '{model.tag}' right now", retry_after=self._retry_after())

    @staticmethod
    def _upstream_error(record: Record, failure: Failure) -> web.Response:
        """The upstream's own error, status and shape kept."""
        assert failure.status is not None and failure.body is not None
        response = web.Response(status=failure.status, body=failure.body)
        response.headers["Content-Type"] = failure.content_type or wire.JSON
        if not failure.final and (failure.status >= 500 or failure.status == 429):
            response.headers["Retry-After"] = "1"
        record.error = failure.reason
        return response

    def _retry_after(self) -> float:
        return max(1.0, min(30.0, self.balancer.queue_timeout / 10 or 1.0))

    async def _attempt(
        self,
        request: web.Request,
        record: Record,
        state: ContainerState,
        target: Model,
        path: str,
        body: bytes,
    ) -> web.StreamResponse | Failure:
        pool = self._pools.get(state.name)
        if pool is None:
            pool = self._pools[state.name] = UpstreamPool(state.url, connect_timeout=self.connect_timeout)
        sent = time.perf_counter()
        try:  # the pool itself sends once more when a stale keep-alive connection was the cause
            upstream = await pool.post(path, body, record.request_id, self.ttft_timeout or None)
        except TimeoutError:
            self.fleet.report_failure(state, f"no first token within {self.ttft_timeout:g}s")
            return Failure("ttft_timeout")
        except aiohttp.ServerDisconnectedError:
            self.fleet.report_failure(state, "server disconnected")
            return Failure("disconnected")
        except (aiohttp.ClientConnectorError, ConnectFailed) as exc:
            self.fleet.report_failure(state, f"cannot connect: {exc.os_error}", fatal=True)
            return Failure("connect")
        except (aiohttp.ClientError, OSError) as exc:
            self.fleet.report_failure(state, f"{type(exc).__name__}: {exc}")
            return Failure("connection")
        finally:
            record.upstream_wait += time.perf_counter() - sent
        try:
            if upstream.status in RETRYABLE:
                return await self._failed_status(state, upstream)
            return await self._stream(request, record, state, target, upstream)
        finally:
            upstream.release()

    async def _failed_status(self, state: ContainerState, upstream: UpstreamResponse) -> Failure:
        try:
            async with asyncio.timeout(5):
                error_body = await upstream.read()
        except (aiohttp.ClientError, OSError, TimeoutError):
            error_body = None
        content_type = upstream.headers.get("Content-Type")
        if upstream.status == 500 and error_body is not None and error_body.startswith(CLIENT_FAULT_500_PREFIX):
            return Failure("client_fault", 500, content_type, error_body, final=True)
        if upstream.status >= 500 and upstream.status != 503:  # 503 is Ollama's "server busy": load, not ill health
            self.fleet.report_failure(state, f"HTTP {upstream.status}")
        return Failure(f"http_{upstream.status}", upstream.status, content_type, error_body)

    async def _stream(
        self,
        request: web.Request,
        record: Record,
        state: ContainerState,
        target: Model,
        upstream: UpstreamResponse,
    ) -> web.StreamResponse:
        response = PassThroughResponse(status=upstream.status)
        out_headers = response.headers
        out_headers.extend(end_to_end_headers(upstream.headers))
        out_headers["X-Request-Id"] = record.request_id
        out_headers["X-Router-Container"] = state.name
        out_headers["X-Router-Model"] = target.tag
        if record.fallback_from is not None:
            out_headers["X-Router-Fallback"] = f"{record.fallback_from} -> {target.tag} ({record.fallback_reason})"
        length = upstream.content_length
        if length is not None:
            response.content_length = length
        record.container = state.name
        record.served_model = target.tag
        record.status = upstream.status
        content_type = upstream.headers.get("Content-Type", "")
        tail = b""
        try:
            await response.prepare(request)
            record.ttfb = time.perf_counter() - record.started
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
                record.bytes_out += len(chunk)
                # enough of the end to judge completeness, even when split
                tail = tail[-192:] + chunk if len(chunk) < 192 else chunk
        except (ConnectionResetError, asyncio.CancelledError) as exc:
            # The client left: dropping the upstream connection stops the generation.
            record.client_left = True
            upstream.close()
            if isinstance(exc, asyncio.CancelledError):
                raise
            return response
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await self._end_broken_stream(response, record, state, content_type, f"upstream stream broke: {exc!r}")
            return response
        record.tail = tail
        unterminated = None
        if upstream.status == 200:
            broken = _stream_incomplete(content_type, tail)
            if broken:
                self.stream_failures += 1
                record.stream_broken = broken
                log.warning("stream_failed", request_id=record.request_id, container=state.name, reason=broken)
                if broken != ENDED_WITH_ERROR:
                    unterminated = broken
                # the container failed mid-answer: it counts towards taking it out of rotation
                self.fleet.report_failure(state, broken)
            else:
                self.fleet.report_success(state)
        try:
            if unterminated:  # tell the client it failed, not merely stopped (Ollama's SSE just ends)
                await _write_stream_error(response, content_type, unterminated)
            await response.write_eof()
        except ConnectionResetError:
            record.client_left = True
        return response

    async def _end_broken_stream(
        self, response: web.StreamResponse, record: Record, state: ContainerState, content_type: str, reason: str
    ) -> None:
        self.stream_failures += 1
        record.stream_broken = reason
        self.fleet.report_failure(state, reason)
        log.warning("stream_failed", request_id=record.request_id, container=state.name, reason=reason)
        try:
            await _write_stream_error(response, content_type, reason)
            await response.write_eof()
        except (ConnectionResetError, RuntimeError):
            pass


async def _write_stream_error(response: web.StreamResponse, content_type: str, reason: str) -> None:
    """End a failed stream the way its API does: an error line (NDJSON), an error event (SSE)."""
    if content_type.startswith(wire.NDJSON):
        await response.write(wire.native_error_body(reason) + b"\n")
    elif content_type.startswith(wire.SSE):
        await response.write(b"data: " + wire.openai_error_body(reason, 502).rstrip(b"\n") + b"\n\n")


def _rewrite(payload: dict[str, Any], model_field: str, tag: str) -> bytes:
    return orjson.dumps({**payload, model_field: tag})


def _stream_incomplete(content_type: str, tail: bytes) -> str | None:
    """Why a finished stream is not a complete one, judged from its last bytes."""
    if content_type.startswith(wire.SSE):
        return None if tail.endswith(b"data: [DONE]\n\n") else "stream ended without [DONE]"
    if content_type.startswith(wire.NDJSON):
        last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        if b'"error"' in last:
            return ENDED_WITH_ERROR
        if b'"done":true' not in last:
            return "stream ended before done:true"
    return None


__all__ = ["PassThroughResponse", "Proxy", "Record"]
