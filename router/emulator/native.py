"""Ollama's own API: /api/generate, /api/chat, /api/embed, /api/embeddings (4-6)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from router.emulator.answers import plan_answer, thinks
from router.emulator.config import NEW_CHAT_NOT_FOUND_SINCE, EmulatorConfig
from router.emulator.decode import BOOL, INT, OBJECT, STRING, go_kind, read_json
from router.emulator.engine import Job
from router.emulator.errors import ApiError
from router.emulator.responses import native_json, ndjson_line
from router.emulator.state import Emulator
from router.emulator.streaming import Framing, stream_job
from router.emulator.text import context_ids, count_tokens, prompt_token_count, raw_vector, unit_vector
from router.emulator.times import created_at
from router.emulator.tools import plan_tool_calls
from router.emulator.validation import (
    chat_model,
    check_options,
    check_think,
    check_top_logprobs,
    keep_alive_of,
    lookup,
    note_model,
    num_predict,
    resolve,
)
from router.emulator.window import chat_fit, embed_fit, prompt_fit, resolve_shift
from router.wire import NDJSON

GENERATE_TYPES = {
    "model": STRING, "prompt": STRING, "suffix": STRING, "system": STRING, "template": STRING,
    "stream": BOOL, "raw": BOOL, "options": OBJECT, "context": (((list,), "[]int")), "shift": BOOL,
}
CHAT_TYPES = {"model": STRING, "messages": (((list,), "[]api.Message")), "stream": BOOL,
              "tools": (((list,), "api.Tools")), "options": OBJECT, "shift": BOOL}
EMBED_TYPES = {"model": STRING, "truncate": BOOL, "dimensions": INT, "options": OBJECT}
EMBEDDINGS_TYPES = {"model": STRING, "prompt": STRING, "options": OBJECT}
ASSISTANT_EMPTY = {"role": "assistant", "content": ""}
EMBED_NOT_FOUND = 'model "{}" not found, try pulling it first'


def chat_not_found(config: EmulatorConfig) -> str:
    """The unknown-model message of /api/chat (and /v1/chat/completions) for this version."""
    if config.version_info >= NEW_CHAT_NOT_FOUND_SINCE:
        return "model '{}' not found"
    return EMBED_NOT_FOUND


def assistant_message(content: str, thinking: str, tool_calls: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Message keys in Go order, empty ones omitted except role and content (1.7, 5.2)."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def chat_prompt(messages: list[Any]) -> tuple[str, int]:
    """A seed key for the conversation and its prompt token count."""
    parts: list[str] = []
    contents: list[str] = []
    for message in messages:
        if not isinstance(message, dict):
            raise ApiError(400, f"json: cannot unmarshal {go_kind(message)} into Go value of type api.Message")
        content = message.get("content") or ""
        if not isinstance(content, str):
            raise ApiError(
                400,
                f"json: cannot unmarshal {go_kind(content)} into Go struct field Message.messages.content of type string",
            )
        parts.append(f"{message.get('role', '')}\x1f{content}")
        contents.append(content)
    return "\x1e".join(parts), prompt_token_count(contents, messages=len(messages))


class NativeApi:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.store = emulator.store
        self.engine = emulator.engine
        self.scheduler = emulator.scheduler
        self.faults = emulator.faults
        self.chat_not_found = chat_not_found(emulator.config)

    # -- /api/generate ------------------------------------------------------------

    async def generate(self, request: web.Request) -> web.StreamResponse:
        streaming = True
        try:
            body = await read_json(request, "GenerateRequest", GENERATE_TYPES)
            streaming = body.get("stream") is not False
            keep_alive = keep_alive_of(body)
            model = body.get("model") or ""
            if not model:
                raise ApiError(404, "model '' not found")
            note_model(self.emulator, model)
            if body.get("raw") and (body.get("template") or body.get("system") or body.get("context")):
                raise ApiError(400, "raw mode does not support template, system, or context")
            info = resolve(self.store, model, "model '{}' not found")
            if info.embedding:
                raise ApiError(400, f'"{model}" does not support generate')
            if body.get("suffix") and "insert" not in info.capabilities:
                raise ApiError(400, f"{info.name.qualified} does not support insert")
            check_think(info, model, body.get("think"))
            check_top_logprobs(body)
            fault = self.faults.for_request(info.key, "/api/generate")
            prompt = body.get("prompt") or ""
            if not prompt:
                return await self._load_or_unload(model, info, keep_alive, body, fault, chat=False)
            options = check_options(body.get("options"))
            system = body.get("system") or ""
            tokens, thinking, reason = plan_answer(
                self.emulator, info, f"{system}\x1e{prompt}", options, num_predict(options),
                think=thinks(info, body.get("think")), fmt=body.get("format"),
            )
            prompt_tokens = prompt_token_count([system, prompt])
            job = Job(
                info, keep_alive, prompt_tokens, tokens, reason, fault, options=options, thinking=thinking,
                shift=body.get("shift"),
                fit=prompt_fit(prompt_tokens, resolve_shift(body.get("shift"), info), self.emulator.config),
            )
            with_context = not body.get("raw")
            if not streaming:
                await self.engine.complete(job)
                final = self._generate_final(model, job, job.content_text(), job.thinking_text(), prompt, with_context)
                return native_json(final)

            def line(response: str, thinking: str) -> bytes:
                data: dict[str, Any] = {"model": model, "created_at": created_at(), "response": response}
                if thinking:
                    data["thinking"] = thinking
                data["done"] = False
                return ndjson_line(data)

            return await stream_job(
                request, self.engine, job,
                Framing(
                    NDJSON,
                    token=lambda t: line(t, ""),
                    end=lambda: ndjson_line(self._generate_final(model, job, "", "", prompt, with_context)),
                    cut=lambda message: ndjson_line({"error": message}),
                    error=lambda exc: exc.native(streaming=True),
                    thinking=lambda t: line("", t),
                ),
            )
        except ApiError as exc:
            return exc.native(streaming=streaming)

    @staticmethod
    def _generate_final(
        model: str, job: Job, text: str, thinking: str, prompt: str, with_context: bool
    ) -> dict[str, Any]:
        final: dict[str, Any] = {"model": model, "created_at": created_at(), "response": text}
        if thinking:
            final["thinking"] = thinking
        final["done"] = True
        final["done_reason"] = job.done_reason
        if with_context:
            final["context"] = context_ids(prompt, job.tokens, job.metrics.prompt_eval_count)
        final.update(job.metrics.native())
        return final

    # -- /api/chat ----------------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        streaming = True
        try:
            body = await read_json(request, "ChatRequest", CHAT_TYPES)
            streaming = body.get("stream") is not False
            keep_alive = keep_alive_of(body)
            model, info = chat_model(self.emulator, body, self.chat_not_found)
            if body.get("tools") and "tools" not in info.capabilities:
                raise ApiError(400, f"{info.name.qualified} does not support tools")
            check_think(info, model, body.get("think"))
            check_top_logprobs(body)
            fault = self.faults.for_request(info.key, "/api/chat")
            messages = body.get("messages") or []
            if not messages:
                return await self._load_or_unload(model, info, keep_alive, body, fault, chat=True)
            options = check_options(body.get("options"))
            prompt_key, prompt_tokens = chat_prompt(messages)
            tool_calls = plan_tool_calls(body.get("tools"), messages)
            tokens, thinking, reason = plan_answer(
                self.emulator, info, prompt_key, options, num_predict(options),
                think=thinks(info, body.get("think")), answer=tool_calls is None, fmt=body.get("format"),
            )
            job = Job(
                info, keep_alive, prompt_tokens, tokens, reason, fault,
                options=options, thinking=thinking, tool_calls=tool_calls, shift=body.get("shift"),
                fit=chat_fit(
                    [(m.get("role", ""), m.get("content") or "") for m in messages],
                    resolve_shift(body.get("shift"), info), self.emulator.config,
                ),
            )
            if not streaming:
                await self.engine.complete(job)
                message = assistant_message(job.content_text(), job.thinking_text(), job.tool_calls)
                return native_json(self._chat_final(model, job, message))

            def line(message: dict[str, Any]) -> bytes:
                return ndjson_line({"model": model, "created_at": created_at(), "message": message, "done": False})

            return await stream_job(
                request, self.engine, job,
                Framing(
                    NDJSON,
                    token=lambda t: line({"role": "assistant", "content": t}),
                    end=lambda: ndjson_line(self._chat_final(model, job, ASSISTANT_EMPTY)),
                    cut=lambda message: ndjson_line({"error": message}),
                    error=lambda exc: exc.native(streaming=True),
                    thinking=lambda t: line({"role": "assistant", "content": "", "thinking": t}),
                    tools=lambda calls: line({"role": "assistant", "content": "", "tool_calls": calls}),
                ),
            )
        except ApiError as exc:
            return exc.native(streaming=streaming)

    @staticmethod
    def _chat_final(model: str, job: Job, message: dict[str, Any]) -> dict[str, Any]:
        final: dict[str, Any] = {
            "model": model,
            "created_at": created_at(),
            "message": message,
            "done": True,
            "done_reason": job.done_reason,
        }
        final.update(job.metrics.native())
        return final

    # -- load / unload mode (4.4, 5.4) ---------------------------------------------

    async def _load_or_unload(
        self, model: str, info: Any, keep_alive: float | None, body: dict[str, Any], fault: Any, *, chat: bool
    ) -> web.Response:
        if keep_alive == 0:
            await self.engine.preflight(fault)
            self.scheduler.request_unload(info)
            reason = "unload"
        else:
            options = check_options(body.get("options"))
            await self.engine.load_only(info, keep_alive, fault, options, body.get("shift"))
            reason = "load"
        reply: dict[str, Any] = {"model": model, "created_at": created_at()}
        if chat:
            reply["message"] = ASSISTANT_EMPTY
        else:
            reply["response"] = ""
        reply["done"] = True
        reply["done_reason"] = reason
        return native_json(reply)

    # -- /api/embed and /api/embeddings (6.1, 6.2) ----------------------------------

    async def embed_vectors(
        self, model: str, inputs: list[str], body: dict[str, Any], path: str, *, not_found: str
    ) -> tuple[list[list[float]], Job | None]:
        """Shared by /api/embed and /v1/embeddings: schedule, then one unit vector per input."""
        keep_alive = keep_alive_of(body)
        info = resolve(self.store, model, not_found)
        fault = self.faults.for_request(info.key, path)
        options = check_options(body.get("options"))
        if not inputs:
            await self.engine.load_only(info, keep_alive, fault, options)
            return [], None
        counts = [count_tokens(text) for text in inputs]
        job = Job(
            info, keep_alive, sum(counts), (), "stop", fault, options=options,
            fit=embed_fit(counts, body.get("truncate") is not False, self.emulator.config),
        )
        await self.engine.complete(job)
        dimensions = body.get("dimensions")
        cut = dimensions if isinstance(dimensions, int) and dimensions > 0 else None
        return [unit_vector(info.key, text, info.embedding_length, cut) for text in inputs], job

    async def embed(self, request: web.Request) -> web.Response:
        try:
            body = await read_json(request, "EmbedRequest", EMBED_TYPES)
            model = body.get("model") or ""
            keep_alive_of(body)
            if not model:
                raise ApiError(404, "model '' not found")
            note_model(self.emulator, model)
            raw_input = body.get("input")
            if raw_input is None or raw_input == "":
                inputs: list[str] = []
            elif isinstance(raw_input, str):
                inputs = [raw_input]
            elif isinstance(raw_input, list) and all(isinstance(i, str) for i in raw_input):
                inputs = raw_input
            else:
                raise ApiError(400, "invalid input type")
            vectors, job = await self.embed_vectors(
                model, inputs, body, "/api/embed", not_found=EMBED_NOT_FOUND
            )
            reply: dict[str, Any] = {"model": model, "embeddings": vectors}
            if job is not None:
                metrics = job.metrics
                reply["total_duration"] = metrics.total_duration
                reply["load_duration"] = metrics.load_duration
                reply["prompt_eval_count"] = metrics.prompt_eval_count
            return native_json(reply)
        except ApiError as exc:
            return exc.native()

    async def embeddings(self, request: web.Request) -> web.Response:
        try:
            body = await read_json(request, "EmbeddingRequest", EMBEDDINGS_TYPES)
            model = body.get("model") or ""
            keep_alive = keep_alive_of(body)
            if not model:
                raise ApiError(400, "model is required")
            info = lookup(self.emulator, model, EMBED_NOT_FOUND)
            fault = self.faults.for_request(info.key, "/api/embeddings")
            prompt = body.get("prompt") or ""
            options = check_options(body.get("options"))
            if not prompt:
                await self.engine.load_only(info, keep_alive, fault, options)
                return native_json({"embedding": []})
            job = Job(info, keep_alive, count_tokens(prompt), (), "stop", fault, options=options)
            await self.engine.complete(job)
            # The legacy endpoint returns the raw, un-normalised vector (6.2).
            return native_json({"embedding": raw_vector(info.key, prompt, info.embedding_length)})
        except ApiError as exc:
            return exc.native()
