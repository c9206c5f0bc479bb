"""POST /v1/messages: the Anthropic Messages API over the chat engine
(docs/ollama-wire-2026.md §4).

Data objects are Go structs, so keys keep declaration order. The stream is
message_start (with an estimated input token count), content blocks
(thinking, text, then each tool_use with its input in one input_json_delta),
message_delta with the real usage and message_stop; never a ping, never an
error event. A generation that fails midway just stops (§4.7).
x-api-key, anthropic-version and anthropic-beta are accepted and ignored.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from router.emulator.anthropic_request import REQUEST_TYPES, MessagesRequest, parse_request
from router.emulator.cloud import WEB_SEARCH_UNAVAILABLE, cloud_base, cloud_disabled
from router.emulator.compat import ChatLayer, ChatRequest
from router.emulator.decode import bind_json
from router.emulator.engine import Job
from router.emulator.envelopes import anthropic_error, random_hex_id
from router.emulator.errors import ApiError
from router.emulator.gojson import go_dumps
from router.emulator.responses import sse_named
from router.emulator.versions import ANTHROPIC_EFFORT_SINCE, at_least

PATH = "/v1/messages"


def stop_reason(done_reason: str, called_tools: bool) -> str:
    """Ollama's done_reason in Anthropic's words ("" = the key is left out)."""
    if called_tools:
        return "tool_use"
    if done_reason == "stop":
        return "end_turn"
    if done_reason == "length":
        return "max_tokens"
    return "stop_sequence" if done_reason else ""


def _usage(job: Job | None) -> dict[str, int]:
    return {
        "input_tokens": job.metrics.prompt_eval_count if job else 0,
        "output_tokens": job.metrics.eval_count if job else 0,
    }


def _tool_use(call: dict[str, Any], arguments: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": arguments}


def _done_reason(job: Job | None) -> str:
    return job.done_reason if job else "load"  # no job: the request only loaded the model


def message_body(message_id: str, model: str, job: Job | None) -> dict[str, Any]:
    """The non-streamed reply: thinking, text, then tool_use blocks; content null when there are none."""
    content: list[dict[str, Any]] = []
    calls = (job.tool_calls if job else None) or []
    if job is not None and job.thinking_text():
        content.append({"type": "thinking", "thinking": job.thinking_text()})
    if job is not None and job.content_text():
        content.append({"type": "text", "text": job.content_text()})
    content.extend(_tool_use(call, call["function"]["arguments"]) for call in calls)
    body: dict[str, Any] = {
        "id": message_id, "type": "message", "role": "assistant", "model": model, "content": content or None,
    }
    reason = stop_reason(_done_reason(job), bool(calls))
    if reason:
        body["stop_reason"] = reason
    body["usage"] = _usage(job)
    return body


class EventStream:
    """The streamed events of one message, in Ollama's order (§4.5)."""

    def __init__(self, message_id: str, model: str, estimated_input_tokens: int, job: Job | None) -> None:
        self.message_id = message_id
        self.model = model
        self.estimate = estimated_input_tokens
        self.job = job
        self.started = False
        self.index = 0
        self.thinking_open = False
        self.thinking_done = False
        self.text_open = False
        self.calls_sent = False

    @staticmethod
    def _event(kind: str, data: dict[str, Any]) -> bytes:
        return sse_named(kind, go_dumps({"type": kind, **data}))

    def _start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        return self._event("message_start", {"message": {
            "id": self.message_id, "type": "message", "role": "assistant", "model": self.model, "content": [],
            "usage": {"input_tokens": self.estimate, "output_tokens": 0},
        }})

    def _stop_block(self) -> bytes:
        out = self._event("content_block_stop", {"index": self.index})
        self.index += 1
        return out

    def _close_thinking(self) -> bytes:
        if self.thinking_open and not self.thinking_done:
            self.thinking_done = True
            return self._stop_block()
        return b""

    def _close_text(self) -> bytes:
        if self.text_open:
            self.text_open = False
            return self._stop_block()
        return b""

    def thinking(self, delta: str) -> bytes:
        out = self._start()
        if self.thinking_done:
            return out
        out += self._close_text()
        if not self.thinking_open:
            self.thinking_open = True
            out += self._event("content_block_start", {"index": self.index, "content_block": {"type": "thinking", "thinking": ""}})
        return out + self._event("content_block_delta", {"index": self.index, "delta": {"type": "thinking_delta", "thinking": delta}})

    def token(self, delta: str) -> bytes:
        out = self._start()
        if not delta:
            return out
        out += self._close_thinking()
        if not self.text_open:
            self.text_open = True
            out += self._event("content_block_start", {"index": self.index, "content_block": {"type": "text", "text": ""}})
        return out + self._event("content_block_delta", {"index": self.index, "delta": {"type": "text_delta", "text": delta}})

    def tools(self, calls: list[dict[str, Any]]) -> bytes:
        out = self._start()
        for call in calls:
            out += self._close_thinking() + self._close_text()
            out += self._event("content_block_start", {"index": self.index, "content_block": _tool_use(call, {})})
            out += self._event("content_block_delta", {"index": self.index, "delta": {
                "type": "input_json_delta", "partial_json": go_dumps(call["function"]["arguments"]).decode(),
            }})
            out += self._stop_block()
            self.calls_sent = True
        return out

    def end(self) -> bytes:
        out = self._start()
        if self.text_open or (self.thinking_open and not self.thinking_done):
            out += self._event("content_block_stop", {"index": self.index})
        reason = stop_reason(_done_reason(self.job), self.calls_sent)
        out += self._event("message_delta", {"delta": {"stop_reason": reason} if reason else {}, "usage": _usage(self.job)})
        return out + self._event("message_stop", {})


class AnthropicReply:
    """One request's reply: its id fixed, written whole or as events."""

    def __init__(self, model: str, estimated_input_tokens: int) -> None:
        self.message_id = random_hex_id("msg")
        self.model = model
        self.estimate = estimated_input_tokens

    def body(self, job: Job | None) -> dict[str, Any]:
        return message_body(self.message_id, self.model, job)

    def events(self, job: Job | None) -> EventStream:
        return EventStream(self.message_id, self.model, self.estimate, job)


class AnthropicApi(ChatLayer):
    path = PATH
    relax_thinking = True

    async def parse(self, request: web.Request) -> ChatRequest:
        body = await bind_json(request, "MessagesRequest", REQUEST_TYPES, "anthropic")
        parsed = parse_request(body, efforts=at_least(self.emulator.config, ANTHROPIC_EFFORT_SINCE))
        if parsed.has_web_search and cloud_base(parsed.model) is not None and cloud_disabled(self.emulator.config):
            raise ApiError(*self.cloud.refusal("POST", PATH, WEB_SEARCH_UNAVAILABLE))
        return parsed

    def envelope(self, message: str, status: int) -> dict[str, Any]:
        return anthropic_error(message, status)

    def reply(self, parsed: ChatRequest, model: str) -> AnthropicReply:
        estimate = parsed.estimated_input_tokens if isinstance(parsed, MessagesRequest) else 0
        return AnthropicReply(model, estimate)
