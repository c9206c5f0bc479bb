"""OpenAI compatibility layer: /v1/chat/completions, /v1/completions, /v1/embeddings,
/v1/models (docs/ollama-wire.md §10). A translation over the native semantics: same
scheduler, same errors, rendered in the OpenAI envelope (9.3).
"""

from __future__ import annotations

import base64
import random
import struct
import time
from typing import Any

from aiohttp import web

from router.catalog.durations import go_type_name
from router.emulator.answers import plan_answer, thinks
from router.emulator.decode import BOOL, INT, OBJECT, STRING, read_json
from router.emulator.engine import Job
from router.emulator.errors import ApiError
from router.emulator.native import EMBED_NOT_FOUND, NativeApi, chat_not_found
from router.emulator.responses import SSE_DONE, openai_json, sse_event
from router.emulator.state import Emulator
from router.emulator.streaming import Framing, stream_job
from router.emulator.text import prompt_token_count
from router.emulator.tools import openai_tool_calls, plan_tool_calls
from router.emulator.validation import chat_model, check_think, lookup, note_model, resolve_named, think_from_effort
from router.emulator.window import chat_fit, prompt_fit, resolve_shift
from router.wire import SSE

FINGERPRINT = "fp_ollama"
NUMBER = ((int, float), "float64")
CHAT_TYPES = {
    "model": STRING, "messages": ((list,), "[]openai.Message"), "stream": BOOL, "max_tokens": INT,
    "seed": INT, "temperature": NUMBER, "top_p": NUMBER, "stream_options": OBJECT,
    "frequency_penalty": NUMBER, "presence_penalty": NUMBER,
}
COMPLETION_TYPES = {
    "model": STRING, "prompt": STRING, "suffix": STRING, "stream": BOOL, "max_tokens": INT, "seed": INT,
    "temperature": NUMBER, "top_p": NUMBER, "stream_options": OBJECT,
}
EMBEDDING_TYPES = {"model": STRING, "dimensions": INT, "encoding_format": STRING}


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _stop_list(value: object) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        for item in value:
            if not isinstance(item, str):
                raise ApiError(400, f"invalid type for 'stop' field: {go_type_name(item)}")
        return value
    raise ApiError(400, f"invalid type for 'stop' field: {go_type_name(value)}")


def _options(body: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if body.get("seed") is not None:
        options["seed"] = body["seed"]
    stop = _stop_list(body.get("stop"))
    if stop:
        options["stop"] = stop
    return options


def _native_format(response_format: object) -> object:
    """response_format -> native `format`: json_object -> "json", json_schema -> its schema."""
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        schema = response_format.get("json_schema")
        if isinstance(schema, dict) and isinstance(schema.get("schema"), dict):
            return schema["schema"]
    return None


def _limit(body: dict[str, Any]) -> int | None:
    value = body.get("max_tokens")
    return int(value) if isinstance(value, int) and value > 0 else None


def _message_text(message: object) -> str:
    """The text of one chat message, validating content as the OpenAI layer does."""
    if not isinstance(message, dict):
        raise ApiError(400, "invalid message format")
    content = message.get("content")
    if isinstance(content, str):
        return content
    if content is None:
        if message.get("tool_calls"):
            return ""
        raise ApiError(400, "invalid message content type: <nil>")
    if isinstance(content, list):
        texts: list[str] = []
        for part in content:
            if not isinstance(part, dict):
                raise ApiError(400, "invalid message format")
            kind = part.get("type")
            if kind == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind == "image_url":
                url = part.get("image_url")
                url = url.get("url") if isinstance(url, dict) else url
                if not isinstance(url, str):
                    raise ApiError(400, "invalid message format")
                if url.startswith(("http://", "https://")):
                    raise ApiError(400, "image URLs are not currently supported, please use base64 encoded data instead")
                if not url.startswith("data:"):
                    raise ApiError(400, "invalid image input")
            elif kind != "input_audio":
                raise ApiError(400, "invalid message format")
        return "".join(texts)
    raise ApiError(400, f"invalid message content type: {go_type_name(content)}")


class OpenAIApi:
    def __init__(self, emulator: Emulator, native: NativeApi) -> None:
        self.emulator = emulator
        self.native = native
        self.store = emulator.store
        self.engine = emulator.engine
        self.faults = emulator.faults
        self.legacy = emulator.config.legacy_chat_stream
        self.chat_not_found = chat_not_found(emulator.config)

    # -- /v1/chat/completions (10.1) ------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await read_json(request, "ChatCompletionRequest", CHAT_TYPES, package="openai")
            messages = body.get("messages")
            if not messages:
                raise ApiError(400, "[] is too short - 'messages'")
            texts = [_message_text(m) for m in messages]
            options = _options(body)
            model, info = chat_model(self.emulator, body, self.chat_not_found)
            effort = body.get("reasoning_effort")
            if effort is None and isinstance(body.get("reasoning"), dict):
                effort = body["reasoning"].get("effort")
            think = think_from_effort(effort)
            check_think(info, model, think)
            fault = self.faults.for_request(info.key, "/v1/chat/completions")
            prompt_key = "\x1e".join(
                f"{m.get('role', '')}\x1f{t}" for m, t in zip(messages, texts, strict=True)
            )
            calls = plan_tool_calls(body.get("tools"), messages)
            tokens, thinking, reason = plan_answer(
                self.emulator, info, prompt_key, options, _limit(body), think=thinks(info, think),
                answer=calls is None, fmt=_native_format(body.get("response_format")),
            )
            # /v1 requests carry no keep_alive (10) and no native options.
            job = Job(
                info, None, prompt_token_count(texts, messages=len(texts)), tokens, reason, fault,
                thinking=thinking, tool_calls=calls,
                fit=chat_fit(
                    [(str(m.get("role", "")), t) for m, t in zip(messages, texts, strict=True)],
                    resolve_shift(None, info), self.emulator.config,
                ),
            )
            chat_id = f"chatcmpl-{int(random.random() * 999)}"
            if body.get("stream") is not True:
                await self.engine.complete(job)
                message: dict[str, Any] = {"role": "assistant", "content": job.content_text()}
                if job.thinking:
                    message["reasoning"] = job.thinking_text()
                if calls:
                    message["tool_calls"] = openai_tool_calls(calls)
                return openai_json({
                    "id": chat_id,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "system_fingerprint": FINGERPRINT,
                    "choices": [{"index": 0, "message": message, "finish_reason": self._finish_reason(job)}],
                    "usage": self._usage(job),
                })
            framing = (self._legacy_chat_framing if self.legacy else self._chat_framing)(
                chat_id, model, job, _include_usage(body)
            )
            return await stream_job(request, self.engine, job, framing)
        except ApiError as exc:
            return exc.openai()

    def _finish_reason(self, job: Job) -> str:
        """`stop` becomes `tool_calls` when the answer called tools; legacy servers
        said `tool_calls` even for a truncated (`length`) one."""
        if job.tool_calls and (job.done_reason == "stop" or self.legacy):
            return "tool_calls"
        return job.done_reason

    @staticmethod
    def _usage(job: Job) -> dict[str, int]:
        prompt, completion = job.metrics.prompt_eval_count, job.metrics.eval_count
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _chat_framing(self, chat_id: str, model: str, job: Job, include_usage: bool) -> Framing:
        """Current dialect (>= 0.32.6): role only first, a `delta:{}` finish chunk, shared `created`."""
        state = {"first": True, "created": 0}

        def chunk(delta: dict[str, Any] | None, finish: str | None, usage: dict[str, int] | None = None) -> bytes:
            if state["first"]:
                state["created"] = int(time.time())
            event: dict[str, Any] = {
                "id": chat_id, "object": "chat.completion.chunk", "created": state["created"],
                "model": model, "system_fingerprint": FINGERPRINT,
                "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if usage is not None:
                event["usage"] = usage
            return sse_event(event)

        def delta(**fields: Any) -> bytes:
            """A content chunk; the very first one also names the role."""
            if state["first"]:
                data = chunk({"role": "assistant", **fields}, None)
                state["first"] = False
                return data
            return chunk(fields, None)

        def end() -> bytes:
            out = b""
            if state["first"]:
                out += delta(content="")
            out += chunk({}, self._finish_reason(job))
            if include_usage:
                out += chunk(None, None, self._usage(job))
            return out + SSE_DONE

        return Framing(
            SSE,
            token=lambda text: delta(content=text),
            end=end,
            cut=lambda message: delta(content=""),
            error=ApiError.openai,
            thinking=lambda text: delta(content="", reasoning=text),
            tools=lambda calls: delta(content="", tool_calls=openai_tool_calls(calls)),
        )

    def _legacy_chat_framing(self, chat_id: str, model: str, job: Job, include_usage: bool) -> Framing:
        """Legacy dialect (< 0.32.6): role+content in every delta, finish on the last chunk."""

        def event(finish: str | None, **fields: Any) -> dict[str, Any]:
            return {
                "id": chat_id, "object": "chat.completion.chunk", "created": int(time.time()),
                "model": model, "system_fingerprint": FINGERPRINT,
                "choices": [{"index": 0, "delta": {"role": "assistant", **fields}, "finish_reason": finish}],
            }

        def end() -> bytes:
            last = event(self._finish_reason(job), content="")
            out = sse_event(last)
            if include_usage:
                out += sse_event({**last, "choices": [], "usage": self._usage(job)})
            return out + SSE_DONE

        return Framing(
            SSE,
            token=lambda text: sse_event(event(None, content=text)),
            end=end,
            cut=lambda message: sse_event(event(None, content="")),
            error=ApiError.openai,
            thinking=lambda text: sse_event(event(None, content="", reasoning=text)),
            tools=lambda calls: sse_event(event(None, content="", tool_calls=openai_tool_calls(calls))),
        )

    # -- /v1/completions (10.2) -----------------------------------------------------

    async def completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await read_json(request, "CompletionRequest", COMPLETION_TYPES, package="openai")
            options = _options(body)
            model = body.get("model") or ""
            if not model:
                raise ApiError(404, "model '' not found")
            info = lookup(self.emulator, model, "model '{}' not found")
            if info.embedding:
                raise ApiError(400, f'"{model}" does not support generate')
            fault = self.faults.for_request(info.key, "/v1/completions")
            prompt = body.get("prompt") or ""
            streaming = body.get("stream") is True
            include_usage = streaming and _include_usage(body)
            completion_id = f"cmpl-{int(random.random() * 999)}"

            def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None) -> dict[str, Any]:
                event: dict[str, Any] = {
                    "id": completion_id, "object": "text_completion", "created": int(time.time()),
                    "choices": choices, "model": model, "system_fingerprint": FINGERPRINT,
                }
                if usage is not None:
                    event["usage"] = usage
                return event

            zero = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0} if include_usage else None
            if not prompt:
                await self.engine.load_only(info, None, fault)
                choice = [{"text": "", "index": 0, "finish_reason": "load"}]
                if streaming:
                    return await self._sse_once(request, sse_event(chunk(choice, zero)) + SSE_DONE)
                return openai_json(self._completion_body(completion_id, model, choice, None))
            tokens, _, reason = plan_answer(self.emulator, info, prompt, options, _limit(body))
            prompt_tokens = prompt_token_count([prompt])
            job = Job(
                info, None, prompt_tokens, tokens, reason, fault,
                fit=prompt_fit(prompt_tokens, resolve_shift(None, info), self.emulator.config),
            )
            if not streaming:
                await self.engine.complete(job)
                choice = [{"text": job.content_text(), "index": 0, "finish_reason": job.done_reason}]
                return openai_json(self._completion_body(completion_id, model, choice, self._usage(job)))

            def end() -> bytes:
                out = sse_event(chunk([{"text": "", "index": 0, "finish_reason": job.done_reason}], zero))
                if include_usage:
                    out += sse_event(chunk([], self._usage(job)))
                return out + SSE_DONE

            return await stream_job(
                request, self.engine, job,
                Framing(
                    SSE,
                    token=lambda text: sse_event(chunk([{"text": text, "index": 0, "finish_reason": None}], zero)),
                    end=end,
                    cut=lambda message: sse_event(chunk([{"text": "", "index": 0, "finish_reason": None}], zero)),
                    error=ApiError.openai,
                ),
            )
        except ApiError as exc:
            return exc.openai()

    @staticmethod
    def _completion_body(
        completion_id: str, model: str, choices: list[dict[str, Any]], usage: dict[str, int] | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": completion_id, "object": "text_completion", "created": int(time.time()),
            "model": model, "system_fingerprint": FINGERPRINT, "choices": choices,
        }
        body["usage"] = usage or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        return body

    @staticmethod
    async def _sse_once(request: web.Request, data: bytes) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": SSE})
        await response.prepare(request)
        await response.write(data)
        await response.write_eof()
        return response

    # -- /v1/embeddings (10.3) ------------------------------------------------------

    async def embeddings(self, request: web.Request) -> web.Response:
        try:
            body = await read_json(request, "EmbedRequest", EMBEDDING_TYPES, package="openai")
            raw_input = body.get("input")
            if raw_input == "":
                inputs = [""]
            elif isinstance(raw_input, str):
                inputs = [raw_input]
            elif isinstance(raw_input, list) and raw_input and all(isinstance(i, str) for i in raw_input):
                inputs = raw_input
            else:
                raise ApiError(400, "invalid input")
            encoding = (body.get("encoding_format") or "float")
            if encoding.lower() not in ("float", "base64"):
                raise ApiError(
                    400, f"Invalid value for 'encoding_format' = {encoding}. Supported values: ['float', 'base64']."
                )
            model = body.get("model") or ""
            if not model:
                raise ApiError(404, "model '' not found")
            note_model(self.emulator, model)
            vectors, job = await self.native.embed_vectors(
                model, inputs, body, "/v1/embeddings",
                not_found=EMBED_NOT_FOUND,
            )
            as_base64 = encoding.lower() == "base64"
            data = [
                {
                    "object": "embedding",
                    "embedding": (
                        base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() if as_base64 else v
                    ),
                    "index": index,
                }
                for index, v in enumerate(vectors)
            ]
            tokens = job.metrics.prompt_eval_count if job else 0
            return openai_json({
                "object": "list", "data": data, "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            })
        except ApiError as exc:
            return exc.openai()

    # -- /v1/models (10.4, 10.5) ----------------------------------------------------

    async def models(self, request: web.Request) -> web.Response:
        data = [
            {"id": info.display, "object": "model", "created": int(info.modified_at), "owned_by": info.name.owned_by}
            for info in self.store.listing()
        ]
        return openai_json({"object": "list", "data": data or None})

    async def model(self, request: web.Request) -> web.Response:
        raw = request.match_info["model"]
        try:
            name, info = resolve_named(self.store, raw)
            if info is None:
                raise ApiError(404, f"model '{name.display}' not found")
        except ApiError as exc:
            return exc.openai()
        return openai_json(
            {"id": raw, "object": "model", "created": int(info.modified_at), "owned_by": info.name.owned_by}
        )
