"""What the compatibility endpoints that convert to /api/chat share
(Responses, Anthropic Messages, transcriptions; docs/ollama-wire-2026.md §3-§5).

Each is a middleware in front of the chat handler: a request it rejects
is answered through gin (`aborted`), an error from the chat handler through
the layer's writer (`written`), both in the layer's own envelope. The two
chat layers also share the whole answer: cloud and model checks, the
fault, load-only requests, and the non-streamed or event-streamed reply.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from aiohttp import web

from router.emulator.cloud import INFERENCE_UNAVAILABLE, Cloud, cloud_base
from router.emulator.engine import Job
from router.emulator.envelopes import STREAM_HEADERS, aborted, written
from router.emulator.errors import ApiError
from router.emulator.responses import encoded_json, event_stream_once
from router.emulator.state import Emulator
from router.emulator.streaming import Framing, stream_job
from router.emulator.turns import Turn, turn_job
from router.emulator.validation import chat_model, check_think
from router.wire import SSE

NOT_FOUND = "model '{}' not found"
Parsed = TypeVar("Parsed")


class CompatEndpoint(ABC, Generic[Parsed]):
    """A compatibility middleware and the chat handler behind it."""

    def __init__(self, emulator: Emulator, cloud: Cloud) -> None:
        self.emulator = emulator
        self.engine = emulator.engine
        self.faults = emulator.faults
        self.cloud = cloud

    @abstractmethod
    async def parse(self, request: web.Request) -> Parsed:
        """The middleware's part: read and convert, or raise ApiError."""

    @abstractmethod
    async def answer(self, request: web.Request, parsed: Parsed) -> web.StreamResponse:
        """The chat handler's part, raising ApiError before the first byte."""

    @abstractmethod
    def envelope(self, message: str, status: int) -> dict[str, Any]:
        """This API's error body."""

    def streams(self, parsed: Parsed) -> bool:
        return False

    async def create(self, request: web.Request) -> web.StreamResponse:
        try:
            parsed = await self.parse(request)
        except ApiError as exc:
            return aborted(self.envelope(exc.message, exc.status), exc.status)
        try:
            return await self.answer(request, parsed)
        except ApiError as exc:
            return written(self.envelope(exc.message, exc.status), exc.status, streaming=self.streams(parsed))


@dataclass(slots=True)
class ChatRequest:
    """What a chat layer's middleware hands the chat handler."""

    body: dict[str, Any]  # as sent, for what the reply echoes
    model: str
    stream: bool
    turn: Turn
    has_web_search: bool  # a server-side search tool: the emulator never searches


class Events(Protocol):
    """One reply's event stream: each method returns the records it adds."""

    def thinking(self, delta: str) -> bytes: ...
    def token(self, delta: str) -> bytes: ...
    def tools(self, calls: list[dict[str, Any]]) -> bytes: ...
    def end(self) -> bytes: ...


class Reply(Protocol):
    """How one request's answer is written (ids are fixed per request)."""

    def body(self, job: Job | None) -> dict[str, Any]: ...  # None: the request only loaded the model
    def events(self, job: Job | None) -> Events: ...


class ChatLayer(CompatEndpoint[ChatRequest]):
    path = ""
    relax_thinking = False  # Anthropic: a model that cannot think just answers (§4.3)

    @abstractmethod
    def reply(self, parsed: ChatRequest, model: str) -> Reply: ...

    def streams(self, parsed: ChatRequest) -> bool:
        return parsed.stream

    async def answer(self, request: web.Request, parsed: ChatRequest) -> web.StreamResponse:
        if parsed.has_web_search and cloud_base(parsed.model) is not None:
            # Search orchestration keeps the local layer and sends the chat to ollama.com (§6.2).
            raise ApiError(*self.cloud.refusal("POST", "/api/chat", INFERENCE_UNAVAILABLE))
        model, info = chat_model(self.emulator, {"model": parsed.model}, NOT_FOUND)
        turn = parsed.turn
        if self.relax_thinking and not info.thinking:
            turn.think = None
        check_think(info, model, turn.think)
        fault = self.faults.for_request(info.key, self.path)
        reply = self.reply(parsed, model)
        if not turn.messages:
            # Nothing to answer: the chat handler only loads the model.
            await self.engine.load_only(info, None, fault)
            if parsed.stream:
                return await event_stream_once(request, reply.events(None).end(), STREAM_HEADERS)
            return encoded_json(reply.body(None))
        job = turn_job(self.emulator, info, turn, fault)
        if not parsed.stream:
            await self.engine.complete(job)
            return encoded_json(reply.body(job))
        events = reply.events(job)
        return await stream_job(request, self.engine, job, Framing(
            SSE,
            token=events.token,
            end=events.end,
            cut=lambda message: b"",  # a failure midway just ends the stream (§3.6, §4.7)
            error=lambda exc: written(self.envelope(exc.message, exc.status), exc.status, streaming=True),
            thinking=events.thinking,
            tools=events.tools,
            headers=STREAM_HEADERS,
        ))
