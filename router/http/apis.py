"""One adapter per API the router speaks, holding exactly what differs
between them: how an error looks, how a stream that broke midway must end,
and how to tell a finished stream from a truncated one. Everything else (the
proxy, metrics, the access log) is shared.

Each also says how a request of its endpoints names its conversation
(`conversation_key`, from the parsed body; router.http.prefix), which prefix
affinity places by.

Which adapter a request gets depends on its path alone (`api_for`), so errors
raised before routing (a 401, a 413, a malformed request) are in the right
shape too. Wire facts: docs/ollama-wire.md §9 (native and OpenAI errors),
docs/ollama-wire-2026.md (Responses and Anthropic Messages).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
from aiohttp import web

from router import wire
from router.http import prefix
from router.http.errors import MethodNotAllowed, NotFoundRoute, RouterError

ENDED_WITH_ERROR = "stream ended with an error event"
SSE_DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class StreamSoFar:
    """What a client already received of a stream that failed: enough to end it the API's way."""

    content_type: str
    head: bytes  # the first bytes (where a Responses stream names its response)
    tail: bytes  # the last bytes
    request_id: str


def _separated(sent: StreamSoFar, record: bytes) -> bytes:
    """`record` as the stream's next record (an SSE event, an NDJSON line), never glued
    to one the failure left half-written."""
    tail = sent.tail
    if not tail:
        return record
    if sent.content_type.startswith(wire.SSE):
        return record if tail.endswith(b"\n\n") else (b"\n" if tail.endswith(b"\n") else b"\n\n") + record
    return record if tail.endswith(b"\n") else b"\n" + record


def retry_after_header(error: RouterError) -> dict[str, str]:
    return {"Retry-After": str(max(1, round(error.retry_after)))} if error.retry_after is not None else {}


class Api:
    """Ollama's native API (and the router's own paths): `{"error": "..."}`, NDJSON streams."""

    name = "ollama"
    # by path: how a request's body names its conversation (paths without one, such as embeddings, have none)
    conversation_keys: ClassVar[Mapping[str, prefix.KeyFunction]] = {
        "/api/chat": prefix.chat_key,
        "/api/generate": prefix.generate_key,
    }

    def conversation_key(self, path: str, payload: dict[str, Any]) -> prefix.Conversation | None:
        """The hashes of the conversation's start and preamble (router.http.prefix), or None when the request has none."""
        key_of = self.conversation_keys.get(path)
        return key_of(payload) if key_of is not None else None

    def render(self, error: RouterError, request_id: str) -> web.Response:
        if isinstance(error, (NotFoundRoute, MethodNotAllowed)):
            # gin's own text answers, as Ollama gives them (docs/ollama-wire-2026.md §1.1)
            text = b"404 page not found" if error.status == 404 else b"405 method not allowed"
            response = web.Response(status=error.status, body=text, content_type="text/plain")
        else:
            body = wire.native_error_body(error.message, **({"code": error.code} if error.status == 429 else {}))
            response = web.Response(status=error.status, body=body, headers={"Content-Type": wire.JSON_UTF8})
        response.headers.update(retry_after_header(error))
        response.headers.update(error.headers)
        return response

    def end_failed_stream(self, sent: StreamSoFar, reason: str) -> bytes | None:
        """Bytes that tell a client the stream failed (not merely stopped), or None to just close."""
        if sent.content_type.startswith(wire.NDJSON):
            return _separated(sent, wire.native_error_body(reason) + b"\n")
        return None

    def incomplete(self, content_type: str, tail: bytes) -> str | None:
        """Why a stream that ended is not a complete answer, judged from its last bytes."""
        if not content_type.startswith(wire.NDJSON):
            return None
        last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        if b'"error"' in last:
            return ENDED_WITH_ERROR
        if b'"done":true' not in last:
            return "stream ended before done:true"
        return None


class OpenAIApi(Api):
    """OpenAI chat/completions/embeddings: the error envelope; SSE streams end with [DONE]."""

    name = "openai"
    conversation_keys: ClassVar[Mapping[str, prefix.KeyFunction]] = {
        "/v1/chat/completions": prefix.chat_key,
        "/v1/completions": prefix.completion_key,
    }

    def render(self, error: RouterError, request_id: str) -> web.Response:
        body = wire.openai_error_body(error.message, error.status, type_=error.openai_type, param=error.param, code=error.code)
        response = web.Response(status=error.status, body=body, headers={"Content-Type": wire.JSON})
        response.headers.update(retry_after_header(error))
        response.headers.update(error.headers)
        return response

    def end_failed_stream(self, sent: StreamSoFar, reason: str) -> bytes | None:
        if sent.content_type.startswith(wire.SSE):
            return _separated(sent, b"data: " + wire.openai_error_body(reason, 502).rstrip(b"\n") + b"\n\n")
        return super().end_failed_stream(sent, reason)

    def incomplete(self, content_type: str, tail: bytes) -> str | None:
        if content_type.startswith(wire.SSE):
            return None if tail.endswith(SSE_DONE) else "stream ended without [DONE]"
        return super().incomplete(content_type, tail)


def _last_sse_record(tail: bytes) -> bytes:
    return tail.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]


RESPONSE_ID = re.compile(rb'"id":"(resp_[^"\\]{1,64})"')
SEQUENCE_NUMBER = re.compile(rb'"sequence_number":(\d{1,12})')


class ResponsesApi(OpenAIApi):
    """OpenAI Responses: OpenAI's errors; a stream is complete once `response.completed` came."""

    name = "responses"
    conversation_keys: ClassVar[Mapping[str, prefix.KeyFunction]] = {"/v1/responses": prefix.responses_key}
    # Ollama writes each event's data with sorted keys, so "type" is the data's last key.
    COMPLETE = (b'"type":"response.completed"}', b'"type":"response.incomplete"}')
    FAILED = (b'"type":"response.failed"}', b'"type":"error"}')

    def end_failed_stream(self, sent: StreamSoFar, reason: str) -> bytes | None:
        """`response.failed` for the response the stream began (the openai SDK refuses a
        lifecycle event naming another response), numbered after the last event; its
        `output` is left out, so the SDK fills in the items it received."""
        if not sent.content_type.startswith(wire.SSE):
            return super().end_failed_stream(sent, reason)
        response: dict[str, object] = {"error": {"code": "server_error", "message": reason}, "object": "response", "status": "failed"}
        if (named := RESPONSE_ID.search(sent.head)) is not None:
            response["id"] = named.group(1).decode()
        numbers = SEQUENCE_NUMBER.findall(sent.tail)
        data = {"response": response, "sequence_number": int(numbers[-1]) + 1 if numbers else 0, "type": "response.failed"}
        return _separated(sent, b"event: response.failed\ndata: " + orjson.dumps(data, option=orjson.OPT_SORT_KEYS) + b"\n\n")

    def incomplete(self, content_type: str, tail: bytes) -> str | None:
        if not content_type.startswith(wire.SSE):
            return super().incomplete(content_type, tail)
        last = _last_sse_record(tail).rstrip()
        if last.endswith(self.COMPLETE):
            return None
        if last.endswith(self.FAILED):
            return ENDED_WITH_ERROR
        return "stream ended without response.completed"


# Ollama's mapping of a status to an Anthropic error type (docs/ollama-wire-2026.md).
ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def anthropic_error_body(message: str, status: int, request_id: str) -> bytes:
    error = {"type": ANTHROPIC_ERROR_TYPES.get(status, "api_error"), "message": message}
    return orjson.dumps({"type": "error", "error": error, "request_id": "req_" + request_id})


class AnthropicApi(Api):
    """Anthropic Messages: `{"type":"error",...}`; a stream is complete once `message_stop` came."""

    name = "anthropic"
    conversation_keys: ClassVar[Mapping[str, prefix.KeyFunction]] = {"/v1/messages": prefix.anthropic_key}

    def render(self, error: RouterError, request_id: str) -> web.Response:
        """Anthropic's envelope; its id also in `request-id`, where Anthropic's SDKs look for it."""
        body = anthropic_error_body(error.message, error.status, request_id)
        headers = {"Content-Type": wire.JSON, "request-id": "req_" + request_id}
        response = web.Response(status=error.status, body=body, headers=headers)
        response.headers.update(retry_after_header(error))
        response.headers.update(error.headers)
        return response

    def end_failed_stream(self, sent: StreamSoFar, reason: str) -> bytes | None:
        """Anthropic's `error` event (its SDKs raise on it)."""
        if not sent.content_type.startswith(wire.SSE):
            return super().end_failed_stream(sent, reason)
        return _separated(sent, b"event: error\ndata: " + anthropic_error_body(reason, 500, sent.request_id) + b"\n\n")

    def incomplete(self, content_type: str, tail: bytes) -> str | None:
        if not content_type.startswith(wire.SSE):
            return super().incomplete(content_type, tail)
        last = _last_sse_record(tail)
        if last.startswith(b"event: message_stop"):
            return None
        if last.startswith(b"event: error"):
            return ENDED_WITH_ERROR
        return "stream ended without message_stop"


class TranscriptionsApi(OpenAIApi):
    """OpenAI transcriptions: OpenAI's errors. Ollama writes the whole transcript at the
    end, under the NDJSON content type of the chat stream it ran (docs/ollama-wire-2026.md
    §5), and a failure after that header leaves an empty body: the only incomplete answer."""

    name = "transcriptions"

    def end_failed_stream(self, sent: StreamSoFar, reason: str) -> bytes | None:
        return None

    def incomplete(self, content_type: str, tail: bytes) -> str | None:
        return None if tail else "the transcription ended without a transcript"


class RouterApi(Api):
    """The router's own paths (/healthz, /router/*, /metrics, /ui): native-shaped errors."""

    name = "router"
    conversation_keys: ClassVar[Mapping[str, prefix.KeyFunction]] = {}


OLLAMA = Api()
OPENAI = OpenAIApi()
RESPONSES = ResponsesApi()
ANTHROPIC = AnthropicApi()
TRANSCRIPTIONS = TranscriptionsApi()
ROUTER = RouterApi()

ROUTER_PREFIXES = ("/router/", "/ui")
ROUTER_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/router", "/ui"})


def api_for(path: str) -> Api:
    if path.startswith("/v1/"):
        if path.startswith("/v1/messages"):
            return ANTHROPIC
        if path.startswith("/v1/responses"):
            return RESPONSES
        if path.startswith("/v1/audio/"):
            return TRANSCRIPTIONS
        return OPENAI
    if path in ROUTER_PATHS or path.startswith(ROUTER_PREFIXES):
        return ROUTER
    return OLLAMA
