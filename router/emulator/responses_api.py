"""POST /v1/responses: the OpenAI Responses API over the chat engine
(docs/ollama-wire-2026.md §3).

Non-streamed: one struct-ordered JSON body. Streamed: `event:`/`data:`
records whose data are Go maps (keys sorted), numbered from 0, with no
`[DONE]`; reasoning comes as reasoning_summary_text events, tool calls as
function_call items whose arguments arrive in one delta. A generation that
fails midway just stops: no response.completed, no response.failed (§3.6).
"""

from __future__ import annotations

import random
import time
from typing import Any

from aiohttp import web

from router.emulator.compat import ChatLayer, ChatRequest
from router.emulator.decode import bind_json
from router.emulator.engine import Job
from router.emulator.envelopes import openai_error
from router.emulator.gojson import go_any, go_dumps, go_number, raw_json
from router.emulator.responses import sse_named
from router.emulator.responses_request import REQUEST_TYPES, parse_request
from router.emulator.tools import call_arguments

PATH = "/v1/responses"


def _random_id(prefix: str) -> str:
    """`resp_%d` / `msg_%d` with rand.Intn(999999): short and not unique (§3.3)."""
    return f"{prefix}_{random.randrange(999999)}"


def _usage(job: Job | None) -> dict[str, Any]:
    prompt = job.metrics.prompt_eval_count if job else 0
    output = job.metrics.eval_count if job else 0
    return {
        "input_tokens": prompt,
        "output_tokens": output,
        "total_tokens": prompt + output,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if status == "completed" else []
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def _reasoning_item(item_id: str, thinking: str) -> dict[str, Any]:
    return {
        "id": item_id, "type": "reasoning",
        "summary": [{"type": "summary_text", "text": thinking}], "encrypted_content": thinking,
    }


def _call_item(item_id: str, call: dict[str, Any], status: str, arguments: str) -> dict[str, Any]:
    return {
        "id": item_id, "type": "function_call", "status": status,
        "call_id": call["id"], "name": call["function"]["name"], "arguments": arguments,
    }


class Echo:
    """The request settings every response object repeats (§3.3)."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        instructions = body.get("instructions")
        self.instructions = instructions if isinstance(instructions, str) and instructions else None
        truncation = body.get("truncation")
        self.truncation = truncation if isinstance(truncation, str) else "disabled"
        self.top_p = go_number(body["top_p"]) if body.get("top_p") is not None else 1
        self.temperature = go_number(body["temperature"]) if body.get("temperature") is not None else 1
        reasoning = body.get("reasoning") or {}
        self.effort = reasoning.get("effort") or None
        self.summary = reasoning.get("summary") or None
        text = body.get("text") or {}
        self.format = text.get("format") if isinstance(text.get("format"), dict) else None

    def _text_format(self) -> dict[str, Any]:
        """`text.format` in struct order: type, then name, schema, strict when set."""
        if self.format is None:
            return {"type": "text"}
        shown: dict[str, Any] = {"type": self.format.get("type") or ""}
        if self.format.get("name"):
            shown["name"] = self.format["name"]
        if self.format.get("schema") is not None:
            shown["schema"] = raw_json(self.format["schema"])
        if self.format.get("strict") is not None:
            shown["strict"] = self.format["strict"]
        return shown

    def _tool(self, tool: dict[str, Any], *, nested: bool) -> dict[str, Any]:
        parameters = tool.get("parameters")
        shown = {
            "type": tool.get("type") or "",
            "name": tool.get("name") or "",
            "description": tool.get("description"),
            "strict": tool.get("strict"),
            "parameters": go_any(parameters) if isinstance(parameters, dict) else None,
        }
        members = tool.get("tools")
        if nested and isinstance(members, list) and members:
            shown["tools"] = [self._tool(member, nested=True) for member in members if isinstance(member, dict)]
        return shown

    def tools(self, *, nested: bool) -> list[dict[str, Any]]:
        declared = self.body.get("tools") or []
        return [self._tool(tool, nested=nested) for tool in declared if isinstance(tool, dict)]

    def struct(self, response_id: str, model: str, output: list[dict[str, Any]], job: Job | None) -> dict[str, Any]:
        """The non-streamed response, in ResponsesResponse field order."""
        reasoning: dict[str, Any] | None = None
        if self.effort or self.summary:
            reasoning = {}
            if self.effort:
                reasoning["effort"] = self.effort
            if self.summary:
                reasoning["summary"] = self.summary
        now = int(time.time())
        return {
            "id": response_id, "object": "response", "created_at": now, "completed_at": now,
            "status": "completed", "incomplete_details": None, "model": model, "previous_response_id": None,
            "instructions": self.instructions, "output": output, "error": None,
            "tools": self.tools(nested=True), "tool_choice": "auto", "truncation": self.truncation,
            "parallel_tool_calls": True, "text": {"format": self._text_format()}, "top_p": self.top_p,
            "presence_penalty": 0, "frequency_penalty": 0, "top_logprobs": 0, "temperature": self.temperature,
            "reasoning": reasoning, "usage": _usage(job), "max_output_tokens": self.body.get("max_output_tokens"),
            "max_tool_calls": None, "store": False, "background": self.body.get("background") is True,
            "service_tier": "default", "metadata": {}, "safety_identifier": None, "prompt_cache_key": None,
        }

    def map(self, response_id: str, model: str, status: str, output: list[Any], usage: dict[str, Any] | None) -> dict[str, Any]:
        """The response object inside stream events: a Go map (sorted when written), so the
        same fields, but tools without nested members and reasoning with both keys or null."""
        return {
            **self.struct(response_id, model, output, None),
            "completed_at": None,
            "status": status,
            "tools": self.tools(nested=False),
            "reasoning": {"effort": self.effort, "summary": self.summary} if self.effort or self.summary else None,
            "usage": usage,
        }


class EventStream:
    """The streamed events of one response, in Ollama's order (§3.4)."""

    def __init__(self, echo: Echo, response_id: str, item_id: str, model: str, job: Job | None) -> None:
        self.echo = echo
        self.response_id = response_id
        self.item_id = item_id
        self.model = model
        self.job = job
        self.sequence = 0
        self.started = False
        self.output_index = 0
        self.completed: list[dict[str, Any]] = []
        self.reasoning_id = ""
        self.thinking_text = ""
        self.text = ""
        self.content_started = False
        self.calls_sent = False

    def _event(self, kind: str, data: dict[str, Any]) -> bytes:
        data["type"] = kind
        data["sequence_number"] = self.sequence
        self.sequence += 1
        return sse_named(kind, go_dumps(data, sort_keys=True))

    def _start(self) -> bytes:
        """response.created and response.in_progress, with the first model output."""
        if self.started:
            return b""
        self.started = True
        return b"".join(
            self._event(kind, {"response": self.echo.map(self.response_id, self.model, "in_progress", [], None)})
            for kind in ("response.created", "response.in_progress")
        )

    def _finish_reasoning(self) -> bytes:
        if not self.reasoning_id:
            return b""
        item = _reasoning_item(self.reasoning_id, self.thinking_text)
        index = self.output_index
        out = self._event("response.reasoning_summary_text.done", {
            "item_id": self.reasoning_id, "output_index": index, "summary_index": 0, "text": self.thinking_text,
        })
        out += self._event("response.output_item.done", {"output_index": index, "item": item})
        self.completed.append(item)
        self.reasoning_id, self.thinking_text = "", ""
        self.output_index += 1
        return out

    def thinking(self, delta: str) -> bytes:
        out = self._start()
        if not self.reasoning_id:
            self.reasoning_id = _random_id("rs")
            out += self._event("response.output_item.added", {
                "output_index": self.output_index,
                "item": {"id": self.reasoning_id, "type": "reasoning", "summary": []},
            })
        self.thinking_text += delta
        return out + self._event("response.reasoning_summary_text.delta", {
            "item_id": self.reasoning_id, "output_index": self.output_index, "summary_index": 0, "delta": delta,
        })

    def token(self, delta: str) -> bytes:
        out = self._start()
        if self.calls_sent or not delta:
            return out  # text after a tool call is dropped
        out += self._finish_reasoning()
        if not self.content_started:
            self.content_started = True
            out += self._event("response.output_item.added", {
                "output_index": self.output_index, "item": _message_item(self.item_id, "", "in_progress"),
            })
            out += self._event("response.content_part.added", {
                "item_id": self.item_id, "output_index": self.output_index, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []},
            })
        self.text += delta
        return out + self._event("response.output_text.delta", {
            "item_id": self.item_id, "output_index": self.output_index, "content_index": 0,
            "delta": delta, "logprobs": [],
        })

    def tools(self, calls: list[dict[str, Any]]) -> bytes:
        out = self._start() + self._finish_reasoning()
        for offset, call in enumerate(calls):
            index = self.output_index + offset
            item_id = f"fc_{random.randrange(999999)}_{offset}"
            arguments = call_arguments(call)
            item = _call_item(item_id, call, "completed", arguments)
            self.completed.append(item)
            out += self._event("response.output_item.added", {
                "output_index": index, "item": _call_item(item_id, call, "in_progress", ""),
            })
            out += self._event("response.function_call_arguments.delta", {
                "item_id": item_id, "output_index": index, "delta": arguments,
            })
            out += self._event("response.function_call_arguments.done", {
                "item_id": item_id, "output_index": index, "arguments": arguments,
            })
            out += self._event("response.output_item.done", {"output_index": index, "item": item})
        self.output_index += len(calls)
        self.calls_sent = True
        return out

    def end(self) -> bytes:
        out = self._start() + self._finish_reasoning()
        output = list(self.completed)
        if self.content_started:
            message = _message_item(self.item_id, self.text)
            output.append(message)
            if not self.calls_sent:
                part = message["content"][0]
                common = {"item_id": self.item_id, "output_index": self.output_index, "content_index": 0}
                out += self._event("response.output_text.done", {**common, "text": self.text, "logprobs": []})
                out += self._event("response.content_part.done", {**common, "part": part})
                out += self._event("response.output_item.done", {"output_index": self.output_index, "item": message})
        response = self.echo.map(self.response_id, self.model, "completed", output, _usage(self.job))
        response["completed_at"] = int(time.time())
        return out + self._event("response.completed", {"response": response})


class ResponsesReply:
    """One request's reply: its ids and echo fixed, written whole or as events."""

    def __init__(self, body: dict[str, Any], model: str) -> None:
        self.echo = Echo(body)
        self.model = model
        self.response_id, self.item_id = _random_id("resp"), _random_id("msg")

    def body(self, job: Job | None) -> dict[str, Any]:
        output = _output(self.response_id, self.item_id, job) if job else [_message_item(self.item_id, "")]
        return self.echo.struct(self.response_id, self.model, output, job)

    def events(self, job: Job | None) -> EventStream:
        return EventStream(self.echo, self.response_id, self.item_id, self.model, job)


class ResponsesApi(ChatLayer):
    path = PATH

    async def parse(self, request: web.Request) -> ChatRequest:
        return parse_request(await bind_json(request, "ResponsesRequest", REQUEST_TYPES, "openai"))

    def envelope(self, message: str, status: int) -> dict[str, Any]:
        return openai_error(message, status)

    def reply(self, parsed: ChatRequest, model: str) -> ResponsesReply:
        return ResponsesReply(parsed.body, model)


def _output(response_id: str, item_id: str, job: Job) -> list[dict[str, Any]]:
    """Non-streamed output: reasoning, then the function calls or else the message (§3.3)."""
    output: list[dict[str, Any]] = []
    thinking = job.thinking_text()
    if thinking:
        output.append(_reasoning_item(f"rs_{response_id}", thinking))
    if job.tool_calls:
        output.extend(
            _call_item(f"fc_{response_id}_{index}", call, "completed", call_arguments(call))
            for index, call in enumerate(job.tool_calls)
        )
    else:
        output.append(_message_item(item_id, job.content_text()))
    return output

