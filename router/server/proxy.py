"""Forward one request to a container of its model; stream the answer back.

The proxy executes the attempt plan (`router.fleet.plan`): the model's
containers in the balancer's order, then each fallback model's. A container
that fails before the first byte reaches the client (connection error, 5xx,
Ollama's 503 busy, no headers within `ttft_timeout`: Ollama sends headers
only with the first token) is reported to the fleet and the next one is
tried. Once a byte has gone out, never retry: a stream that breaks upstream,
or sends nothing for `stream_idle_timeout`, is ended the way its API ends a
failed stream.

A container whose Ollama predates the endpoint is no candidate
(`router.versions`); when that leaves none at all, 501. An upload still
arriving from the client (`router.server.transcriptions`) is sent once: after
an attempt that read some of it, nothing else is tried.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import orjson
import structlog
from aiohttp import web

from router import wire
from router.access.keys import ApiKey
from router.catalog import Model
from router.events import EventHub
from router.fleet.balancer import Balancer, NoContainer
from router.fleet.fleet import FailureKind, Fleet
from router.fleet.plan import advance, attempts
from router.fleet.state import ContainerState
from router.http.apis import ENDED_WITH_ERROR, Api, StreamSoFar
from router.http.errors import FleetAtCapacity, NotImplementedByFleet, RouterError, TooManyRequests, Unavailable
from router.http.prefix import Conversation
from router.http.record import Record
from router.limits import ContainerGone, Limits, QueueFull, QueueTimeout
from router.server.context_window import REFUSAL_MAX_BYTES, overflow_refusal, pin_runner_options
from router.settings import RouterSettings
from router.upstream.http1 import ConnectFailed, UpstreamResponse, end_to_end_headers
from router.versions import Version, format_version

log = structlog.get_logger("router.proxy")

# Statuses after which a sibling may do better. 404: the container lacks the
# model the catalog says it has (not pulled yet), which a sibling may have.
RETRYABLE = frozenset({404, 429, 500, 502, 503, 504})
# Ollama answers a request whose option has the wrong type with a 500
# (docs/ollama-wire.md §4.6): the client's fault, which no sibling would answer
# better and which says nothing of the container's health.
CLIENT_FAULT_500_PREFIX = b'{"error":"option \\"'
TAIL_BYTES = 512  # an answer's last bytes kept: its end, and the usage numbers that come just before it
HEAD_BYTES = 512  # its first bytes kept: where a Responses stream names its response


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


class Upload(Protocol):
    """A request body still arriving from the client (router.server.transcriptions):
    sent as what was read of it, then the rest as it comes; only once."""

    content_type: str
    touched: bool  # some of the rest was read from the client: it cannot be sent again

    def body_for(self, tag: str) -> bytes: ...

    def length_for(self, tag: str) -> int | None: ...

    def rest(self) -> AsyncIterator[bytes]: ...


@dataclass(slots=True)
class Call:
    """One request on its way to a container: what the proxy needs to plan and forward it."""

    request: web.Request
    record: Record
    api: Api
    path: str
    payload: dict[str, Any]
    body: bytes
    model: Model
    chain: tuple[Model, ...]  # the model, then its fallbacks
    containers: Mapping[str, ContainerState]  # the catalog's containers when the request started
    settings: RouterSettings
    caller: ApiKey | None = None
    model_field: str = "model"
    needs: Version | None = None  # the first Ollama release that serves this endpoint
    pins: bool = False  # a native request for a model whose runner settings are pinned
    upload: Upload | None = None  # instead of `body`
    conversation: Conversation | None = None  # its key and preamble (router.http.prefix), when a model of the chain places by it

    def body_for(self, target: Model) -> bytes:
        """The body to send when `target` serves: as the client wrote it when it names that
        tag and asks for none of the runner settings the model pins otherwise."""
        payload = self.payload
        if self.pins:
            pinned = pin_runner_options(payload, target, self.path)
            if pinned is not None:
                payload, self.record.pinned = pinned
        if payload is self.payload and payload.get(self.model_field) == target.tag:
            return self.body
        return orjson.dumps({**payload, self.model_field: target.tag})

    @property
    def replayable(self) -> bool:
        """Whether another container can still be sent the request."""
        return self.upload is None or not self.upload.touched

    def serves(self, state: ContainerState) -> bool:
        """Whether the container's Ollama has this endpoint (router.versions)."""
        return self.needs is None or state.serves(self.needs)


@dataclass(slots=True)
class Failure:
    reason: str
    status: int | None = None
    content_type: str | None = None
    body: bytes | None = None
    final: bool = False  # the request's own fault: answer the client, try nothing else


class Proxy:
    def __init__(self, fleet: Fleet, balancer: Balancer, limits: Limits, events: EventHub) -> None:
        self.fleet = fleet
        self.balancer = balancer
        self.limits = limits
        self.events = events
        self.stream_failures = 0

    async def forward(self, call: Call) -> web.StreamResponse:
        caller = call.caller
        key = caller.name if caller is not None else ""
        if not await self.limits.acquire_key(key, caller.max_concurrent if caller is not None else None):
            raise TooManyRequests(
                f"key '{key}' already has {caller.max_concurrent if caller else 0} requests in flight (its max_concurrent)",
                retry_after=1,
            )
        try:
            return await self._forward(call, key)
        finally:
            self.limits.release_key(key)

    async def _forward(self, call: Call, key: str) -> web.StreamResponse:
        record = call.record
        containers = call.containers
        balancer = self.balancer
        candidates = balancer.candidates
        conversation, preamble = call.conversation or (None, 0)
        serves = call.serves
        plan = attempts(
            call.chain,
            # a container too old for the endpoint is skipped like one that is down
            (lambda model, tried: candidates(model, tried, containers, conversation, preamble)) if call.needs is None
            else (lambda model, tried: [s for s in candidates(model, tried, containers, conversation, preamble) if serves(s)]),
            call.caller.allows if call.caller is not None else None,
        )
        last_failure: Failure | None = None
        queue_refused = False
        first_reason: str | None = None
        attempt = next(plan, None)
        while attempt is not None:
            target = attempt.model
            waited_from = time.perf_counter()
            try:
                state = await balancer.acquire(attempt.candidates, key, call.settings.queue_timeout)
            except (QueueFull, QueueTimeout) as exc:
                queue_refused = True
                first_reason = first_reason or type(exc).__name__
                attempt = advance(plan, None)
                continue
            except ContainerGone:
                attempt = advance(plan, "")  # its queue dissolved: plan again from what is left
                continue
            except NoContainer:
                attempt = advance(plan, None)
                continue
            finally:
                record.queue_wait += time.perf_counter() - waited_from
            balancer.placed(target, conversation, state, attempt.candidates, len(call.body), preamble)
            record.attempts += 1
            try:
                outcome = await self._attempt(call, state, target, (first_reason or "no_container") if attempt.fallback else None)
            finally:
                state.slots.release(key)
                balancer.released(target, conversation, state)
            if isinstance(outcome, web.StreamResponse):
                return outcome
            if outcome.final:
                return self._upstream_error(record, outcome)
            first_reason = first_reason or outcome.reason
            if outcome.status is not None:
                last_failure = outcome
            log.warning("attempt_failed", request_id=record.request_id, container=state.name, model=target.tag, reason=outcome.reason)
            attempt = advance(plan, state.name) if call.replayable else None
        return self._nothing_served(call, last_failure, queue_refused)

    def _nothing_served(self, call: Call, last_failure: Failure | None, queue_refused: bool) -> web.StreamResponse:
        model = call.model
        if call.needs is not None and call.record.attempts == 0:
            self._refuse_if_too_old(call, call.needs)
        if not call.replayable and last_failure is None:
            raise RouterError("the container failed while taking the upload, which cannot be sent twice", status=502)
        if queue_refused:
            # a full queue says more than a failure on a container the request already left
            raise FleetAtCapacity(
                f"all containers of model '{model.tag}' are at capacity and their queues are full; retry later",
                retry_after=1,
            )
        if last_failure is not None and last_failure.body is not None and last_failure.status is not None:
            return self._upstream_error(call.record, last_failure)
        raise Unavailable(f"no container can serve model '{model.tag}' right now", retry_after=self._retry_after(call))

    @staticmethod
    def _refuse_if_too_old(call: Call, needs: Version) -> None:
        """501 when every container that could serve the request runs an Ollama without the endpoint."""
        allows = call.caller.allows if call.caller is not None else None
        states = [
            state
            for index, model in enumerate(call.chain)
            if not index or allows is None or allows(model)
            for name in model.containers
            if (state := call.containers.get(name)) is not None
        ]
        if states and not any(state.serves(needs) for state in states):
            versions = ", ".join(sorted({f"{s.name} {s.version}" for s in states}))
            raise NotImplementedByFleet(
                f"{call.path} needs Ollama {format_version(needs)} or newer; "
                f"the containers of model '{call.model.tag}' run older releases ({versions})"
            )

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

    @staticmethod
    def _retry_after(call: Call) -> float:
        return max(1.0, min(30.0, call.settings.queue_timeout / 10 or 1.0))

    async def _attempt(self, call: Call, state: ContainerState, target: Model, fallback_reason: str | None) -> web.StreamResponse | Failure:
        record = call.record
        sent = time.perf_counter()
        ttft = call.settings.ttft_timeout
        try:
            upload = call.upload
            if upload is None:
                upstream = await state.client.upstream().post(call.path, call.body_for(target), record.request_id, ttft or None)
            else:
                upstream = await state.client.upstream().post_upload(
                    call.path, upload.content_type, upload.body_for(target.tag), upload.rest(), upload.length_for(target.tag),
                    record.request_id, ttft or None,
                )
        except TimeoutError:
            return self._failed(state, f"no first token within {ttft:g}s", "ttft_timeout", FailureKind.AMBIGUOUS)
        except (aiohttp.ClientConnectorError, ConnectFailed) as exc:
            return self._failed(state, f"cannot connect: {exc.os_error}", "connect", FailureKind.REFUSED)
        except aiohttp.ServerDisconnectedError:
            return self._failed(state, "server disconnected", "disconnected", FailureKind.CONTAINER)
        except (aiohttp.ClientError, OSError) as exc:
            return self._failed(state, f"{type(exc).__name__}: {exc}", "connection", FailureKind.CONTAINER)
        finally:
            record.upstream_wait += time.perf_counter() - sent
        try:
            if upstream.status in RETRYABLE:
                return await self._failed_status(state, upstream)
            return await self._stream(call, state, target, upstream, fallback_reason)
        finally:
            upstream.release()

    def _failed(self, state: ContainerState, reason: str, label: str, kind: FailureKind) -> Failure:
        self.fleet.request_failed(state, reason, kind)
        return Failure(label)

    async def _failed_status(self, state: ContainerState, upstream: UpstreamResponse) -> Failure:
        try:
            async with asyncio.timeout(5):
                error_body = await upstream.read()
        except (aiohttp.ClientError, OSError, TimeoutError):
            error_body = None
        content_type = upstream.headers.get("Content-Type")
        status = upstream.status
        if status == 500 and error_body is not None and error_body.startswith(CLIENT_FAULT_500_PREFIX):
            return Failure("client_fault", 500, content_type, error_body, final=True)
        if status == 500:
            self.fleet.request_failed(state, "HTTP 500", FailureKind.AMBIGUOUS)
        elif status in (502, 504):
            self.fleet.request_failed(state, f"HTTP {status}", FailureKind.CONTAINER)
        # 503 is Ollama's "server busy" (load, not ill health); 404 and 429 say nothing of its health
        return Failure(f"http_{status}", status, content_type, error_body)

    async def _stream(
        self, call: Call, state: ContainerState, target: Model, upstream: UpstreamResponse, fallback_reason: str | None
    ) -> web.StreamResponse:
        record = call.record
        response = PassThroughResponse(status=upstream.status)
        out_headers = response.headers
        out_headers.extend(end_to_end_headers(upstream.headers))
        out_headers["X-Request-Id"] = record.request_id
        out_headers["X-Router-Container"] = state.name
        out_headers["X-Router-Model"] = target.tag
        if fallback_reason is not None:
            record.fallback_from = call.model.tag
            record.fallback_reason = fallback_reason
            out_headers["X-Router-Fallback"] = f"{call.model.tag} -> {target.tag} ({fallback_reason})"
            log.info("fallback", request_id=record.request_id, model=call.model.tag, to=target.tag, reason=fallback_reason)
            self.events.publish("fallback_served", model=call.model.tag, to=target.tag, reason=fallback_reason, container=state.name)
        length = upstream.content_length
        if length is not None:
            response.content_length = length
        record.container = state.name
        record.served_model = target.tag
        record.status = upstream.status
        content_type = upstream.headers.get("Content-Type", "")
        refusal = b""
        if upstream.status == 400 and length is not None and 0 < length <= REFUSAL_MAX_BYTES:
            refusal = await self._read_refusal(call, state, upstream)
        idle = call.settings.stream_idle_timeout
        if idle:
            upstream.limit_idle(idle)  # counts only time spent waiting for the container: a slow client is not an idle container
        head = tail = b""
        try:
            await response.prepare(call.request)
            record.ttfb = time.perf_counter() - record.started
            if refusal:
                await response.write(refusal)
                record.bytes_out += len(refusal)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
                record.bytes_out += len(chunk)
                if len(head) < HEAD_BYTES:
                    head += chunk[:HEAD_BYTES]
                # enough of the end to judge completeness, even when split
                tail = tail[-TAIL_BYTES:] + chunk if len(chunk) < TAIL_BYTES else chunk
        except (ConnectionResetError, asyncio.CancelledError) as exc:
            # The client left: dropping the upstream connection stops the generation.
            record.client_left = True
            upstream.close()
            if isinstance(exc, asyncio.CancelledError):
                raise
            return response
        except TimeoutError:
            upstream.close()
            sent = StreamSoFar(content_type, head, tail, record.request_id)
            await self._end_broken_stream(call, response, state, sent, f"no bytes from the container for {idle:g}s")
            return response
        except (aiohttp.ClientError, OSError) as exc:
            sent = StreamSoFar(content_type, head, tail, record.request_id)
            await self._end_broken_stream(call, response, state, sent, f"upstream stream broke: {exc!r}")
            return response
        record.tail = tail
        broken = call.api.incomplete(content_type, tail) if upstream.status == 200 else None
        if broken is None:
            self.fleet.request_succeeded(state)
            try:
                await response.write_eof()
            except ConnectionResetError:
                record.client_left = True
            return response
        if broken == ENDED_WITH_ERROR:  # the container said it failed, in the API's own way: pass it on as it is
            self._stream_failed(record, state, broken)
            try:
                await response.write_eof()
            except ConnectionResetError:
                record.client_left = True
            return response
        await self._end_broken_stream(call, response, state, StreamSoFar(content_type, head, tail, record.request_id), broken)
        return response

    async def _read_refusal(self, call: Call, state: ContainerState, upstream: UpstreamResponse) -> bytes:
        """A container's 400, read whole: raised as the router's own error, in the
        API's shape, when it says the prompt is longer than the context window."""
        try:
            async with asyncio.timeout(5):
                body = await upstream.read()
        except (aiohttp.ClientError, OSError, TimeoutError):
            raise RouterError("the container's answer broke off", status=502) from None
        refusal = overflow_refusal(body, call.path)
        if refusal is not None:
            self.fleet.request_succeeded(state)  # a healthy answer to a request that cannot fit
            raise refusal
        return body

    def _stream_failed(self, record: Record, state: ContainerState, reason: str) -> None:
        self.stream_failures += 1
        record.stream_broken = reason
        # the container failed mid-answer: it counts towards taking it out of rotation
        self.fleet.request_failed(state, reason, FailureKind.CONTAINER)
        log.warning("stream_failed", request_id=record.request_id, container=state.name, reason=reason)
        self.events.publish("stream_broken", container=state.name, model=record.served_model, reason=reason)

    async def _end_broken_stream(
        self, call: Call, response: web.StreamResponse, state: ContainerState, sent: StreamSoFar, reason: str
    ) -> None:
        """Tell the client the stream failed, not merely stopped (Ollama's own streams just end)."""
        self._stream_failed(call.record, state, reason)
        ending = call.api.end_failed_stream(sent, reason)
        try:
            if ending is not None:
                await response.write(ending)
            await response.write_eof()
        except (ConnectionResetError, RuntimeError):
            pass


__all__ = ["Call", "PassThroughResponse", "Proxy"]
