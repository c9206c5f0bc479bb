"""POST /v1/audio/transcriptions (docs/ollama-wire-2026.md §5).

A multipart form (model, file, response_format, language, prompt) becomes
a chat turn with Ollama's transcription instructions; the answer's text is
the transcript, seeded by the audio bytes. Ollama runs that chat streamed
and writes the transcript at the end, after the first chunk has already
committed a 200 with the chat stream's `application/x-ndjson` header, so the
emulator does the same: the JSON `{"text"}` body (or the bare text for
`response_format=text`) arrives under that content type, and a generation
cut midway leaves an empty 200.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.helpers import parse_mimetype

from router.emulator.cloud import INFERENCE_UNAVAILABLE, cloud_base
from router.emulator.compat import NOT_FOUND, CompatEndpoint
from router.emulator.envelopes import openai_error, written
from router.emulator.errors import ApiError
from router.emulator.gojson import go_dumps
from router.emulator.streaming import Framing, stream_job
from router.emulator.turns import Turn, turn_job
from router.emulator.validation import chat_model
from router.wire import NDJSON

PATH = "/v1/audio/transcriptions"
SYSTEM_PROMPT = (
    "Transcribe the audio exactly as spoken. Output only the spoken words. Do not answer any question in the audio."
)
USER_PROMPT = "What exact words are spoken in this audio?"
# Not Ollama's text: what a runner without an audio projector says is unverified (§5).
NO_AUDIO = "audio input is not supported by this model"


class Form:
    """The fields of a multipart form: text values, and the bytes of each file part."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.files: dict[str, bytes] = {}

    def value(self, request: web.Request, name: str) -> str:
        """Go's FormValue: the form's first value, else the query string's."""
        return self.values.get(name, request.query.get(name, ""))


async def read_form(request: web.Request) -> Form:
    """Go's ParseMultipartForm, with its error texts (all 400)."""
    prefix = "failed to parse multipart form: "
    mime = parse_mimetype(request.headers.get("Content-Type", ""))
    if (mime.type, mime.subtype) != ("multipart", "form-data"):
        raise ApiError(400, prefix + "request Content-Type isn't multipart/form-data")
    if not mime.parameters.get("boundary"):
        raise ApiError(400, prefix + "no multipart boundary param in Content-Type")
    form = Form()
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name is None:
                continue
            data = await part.read()
            if part.filename is not None:
                form.files.setdefault(part.name, bytes(data))
            else:
                form.values.setdefault(part.name, bytes(data).decode("utf-8", errors="replace"))
    except (ValueError, AssertionError, RuntimeError):
        raise ApiError(400, prefix + "multipart: NextPart: EOF") from None
    return form


@dataclass(slots=True)
class Upload:
    form: Form
    model: str
    audio: bytes


class TranscriptionApi(CompatEndpoint[Upload]):
    async def parse(self, request: web.Request) -> Upload:
        form = await read_form(request)
        model = form.value(request, "model")
        if not model:
            raise ApiError(400, "model is required")
        audio = form.files.get("file")
        if audio is None:
            raise ApiError(400, "file is required: http: no such file")
        if not audio:
            raise ApiError(400, "audio file is empty")
        return Upload(form, model, audio)

    def envelope(self, message: str, status: int) -> dict[str, Any]:
        return openai_error(message, status)

    async def answer(self, request: web.Request, upload: Upload) -> web.StreamResponse:
        if self.cloud.enabled and cloud_base(upload.model) is not None:
            # No passthrough on this route: the chat handler forwards the converted request (§6.2).
            raise ApiError(*self.cloud.refusal("POST", PATH, INFERENCE_UNAVAILABLE))
        _, info = chat_model(self.emulator, {"model": upload.model}, NOT_FOUND)
        if not info.audio:
            raise ApiError(400, NO_AUDIO)
        form = upload.form
        system = SYSTEM_PROMPT
        if language := form.value(request, "language"):
            system += f" The audio is in {language}."
        if prompt := form.value(request, "prompt"):
            system += f" Context: {prompt}"
        digest = hashlib.sha256(upload.audio).hexdigest()
        turn = Turn(
            messages=[{"role": "system", "content": system}, {"role": "user", "content": f"{USER_PROMPT}\x1d{digest}"}],
            think=False,  # the transcript is the answer; any reasoning is not part of it
            options={"temperature": 0},
        )
        job = turn_job(self.emulator, info, turn, self.faults.for_request(info.key, PATH))
        as_text = form.value(request, "response_format") == "text"

        def transcript() -> bytes:
            text = job.content_text().strip()
            return text.encode() if as_text else go_dumps({"text": text}) + b"\n"

        return await stream_job(request, self.engine, job, Framing(
            NDJSON,
            token=lambda token: b"",  # the first chunk commits the 200 and its header
            end=transcript,
            cut=lambda message: b"",
            error=lambda exc: written(self.envelope(exc.message, exc.status), exc.status, streaming=False),
        ))
