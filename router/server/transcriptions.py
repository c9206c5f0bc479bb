"""POST /v1/audio/transcriptions: a multipart upload routed by its `model`
field, never held whole in memory.

The form is read with aiohttp's MultipartReader over a stream that keeps
every byte it takes from the client, only as far as the `model` part
(clients send it before the file; a form that puts it after the file is held
up to the body limit until it is found). The upload then goes to a container as
it arrives: the bytes read so far, with the model's value replaced by the
catalog tag, then the rest of the client's body at the pace the container
reads it (a part's bytes go on once the reader has looked past them: at
most two 64 KiB reads behind the client). The parts that follow are still read as they pass, so a second
`model` part is refused there too: the router drops the unfinished upstream
request (Ollama answers nothing for a body that never ended) and answers 400.

Ollama reads the model with Go's `FormValue`, which prefers the query
string to the form and takes the first form value (docs/ollama-wire-2026.md
§5): a `model` in the query string, or a part that names the model in any
other way (another case, a file part, an encoded name), is refused rather
than risk the two reading different models.

An upload is sent once: a container that fails before any of the rest was
read from the client can be replaced by another (as for every request), one
that fails afterwards cannot, since those bytes are gone. While it streams,
an upload holds one of its container's `num_parallel` slots (for at most
`body_timeout` of waiting on the client).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable

from aiohttp import BodyPartReader, MultipartReader, hdrs, web
from aiohttp.helpers import parse_mimetype
from aiohttp.multipart import parse_content_disposition

from router.catalog.names import MAX_NAME_CHARS
from router.http.body import BodyReader
from router.http.errors import AmbiguousModel, BadRequest, BodyTooLarge, MissingModel, ModelNameTooLong, RequestTimeout, RouterError
from router.server.context import forward_call, record_of, runtime_of

PATH = "/v1/audio/transcriptions"
READ_SIZE = 64 * 1024
MAX_LINE = 16 * 1024  # the longest boundary or part-header line accepted
MAX_MODEL_BYTES = MAX_NAME_CHARS * 4  # UTF-8
PLAIN_ENCODINGS = frozenset({"", "7bit", "8bit", "binary"})  # Go's reader decodes quoted-printable, aiohttp base64 too
FORM_ERROR = "failed to parse multipart form: "


class UploadBroken(BadRequest):
    """The client's upload ended, or broke, before its form did."""


class RecordingStream:
    """The client's body as MultipartReader reads it, keeping each byte taken from the
    client (to forward) and counting them against the body's size and time limits.

    It implements what MultipartReader calls on a stream; `unread_data` hands back
    bytes already taken, which are then read again but recorded once."""

    def __init__(self, request: web.Request, limits: BodyReader) -> None:
        self.source = request.content
        self.limits = limits
        self.time_left = limits.body_timeout
        self.taken = 0
        self.pending = b""  # handed back by the reader: the next bytes it reads
        self.unsent = bytearray()  # taken from the client, not yet forwarded
        self.sent = 0

    @property
    def position(self) -> int:
        """How far into the body the reader is."""
        return self.taken - len(self.pending)

    async def read(self, n: int = -1) -> bytes:
        if self.pending:
            data, self.pending = self.pending[:n], self.pending[n:]
            return data
        return self._record(await self._wait(self.source.read(n if n > 0 else READ_SIZE)))

    async def readline(self, *, max_line_length: int | None = None) -> bytes:
        head = b""
        if self.pending:
            end = self.pending.find(b"\n")
            if end >= 0:
                line, self.pending = self.pending[: end + 1], self.pending[end + 1 :]
                return line
            head, self.pending = self.pending, b""
        limit = min(max_line_length or MAX_LINE, MAX_LINE)
        return head + self._record(await self._wait(self.source.readline(max_line_length=limit)))

    def at_eof(self) -> bool:
        return not self.pending and self.source.at_eof()

    def unread_data(self, data: bytes) -> None:
        self.pending = data + self.pending

    async def read_raw(self) -> bytes:
        """What follows the form (an epilogue), as it comes."""
        if self.pending:
            data, self.pending = self.pending, b""
            return data
        return self._record(await self._wait(self.source.readany()))

    def take_read(self) -> bytes:
        """The bytes the reader has gone past since the last call: the next to forward.
        What it read ahead (and handed back) stays until it has looked at it, so that
        no part's head leaves before its check."""
        count = self.position - self.sent
        data = bytes(self.unsent[:count])
        del self.unsent[:count]
        self.sent += count
        return data

    def _record(self, data: bytes) -> bytes:
        self.taken += len(data)
        if self.taken > self.limits.max_body_bytes:
            raise BodyTooLarge(self.limits.too_large)
        self.unsent += data
        return data

    async def _wait(self, reading: Awaitable[bytes]) -> bytes:
        """One read from the client, within what is left of the body's time limit
        (time spent waiting for the container to take the bytes does not count)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(max(self.time_left, 0.0)):
                return await reading
        except TimeoutError:
            raise RequestTimeout(f"request body not received within {self.limits.body_timeout:g}s") from None
        except RouterError:
            raise
        except Exception as exc:  # the client's connection, or its framing, broke mid-body
            if "too long" in str(exc).lower():
                raise BadRequest(FORM_ERROR + "a line of the form is too long") from None
            raise UploadBroken(f"the upload broke off: {type(exc).__name__}") from None
        finally:
            self.time_left -= loop.time() - started


def _names_model(part: BodyPartReader) -> bool:
    """Whether `part` is the form's model field; AmbiguousModel when it names the model
    in a way Ollama could read differently (or not at all)."""
    disposition = part.headers.get(hdrs.CONTENT_DISPOSITION, "")
    _, params = parse_content_disposition(disposition)
    names = [value for key, value in params.items() if key.startswith("name")]
    if part.name == "model" and list(params) == ["name"]:
        encoding = part.headers.get(hdrs.CONTENT_TRANSFER_ENCODING, "").strip().lower()
        if encoding not in PLAIN_ENCODINGS:
            raise AmbiguousModel(f"the form's model part has Content-Transfer-Encoding '{encoding[:32]}': send it plain")
        return True
    if any(name.casefold() == "model" for name in names) or (not params and "model" in disposition.casefold()):
        raise AmbiguousModel(
            "the form names its model in a part Ollama could read differently: "
            "send one plain field named 'model' (lower case, no filename)"
        )
    return False


async def _next_part(reader: MultipartReader) -> BodyPartReader | None:
    try:
        part = await reader.next()
    except RouterError:
        raise
    except (ValueError, AssertionError) as exc:
        raise BadRequest(FORM_ERROR + str(exc)[:200]) from None
    if part is not None and not isinstance(part, BodyPartReader):
        raise BadRequest(FORM_ERROR + "nested multipart parts are not accepted")
    return part


async def _read_chunk(part: BodyPartReader) -> bytes:
    try:
        return await part.read_chunk(READ_SIZE)
    except RouterError:
        raise
    except (ValueError, AssertionError) as exc:
        raise BadRequest(FORM_ERROR + str(exc)[:200]) from None


async def _read_value(part: BodyPartReader) -> bytes:
    """A field's raw bytes, at most MAX_MODEL_BYTES of them."""
    value = bytearray()
    while not part.at_eof():
        value += await _read_chunk(part)
        if len(value) > MAX_MODEL_BYTES:
            raise ModelNameTooLong(f"the form's model field is over {MAX_MODEL_BYTES} bytes long")
    return bytes(value)


class FormUpload:
    """A transcription upload on its way: read as far as its model, the rest still with the client."""

    def __init__(self, request: web.Request, stream: RecordingStream, reader: MultipartReader) -> None:
        self.content_type = request.headers[hdrs.CONTENT_TYPE]
        self.declared_length = request.content_length
        self.stream = stream
        self.reader = reader
        self.name = ""
        self.read = b""  # the body as far as it was read
        self.value_at = 0  # where the model's value lies in `read`
        self.value_length = 0
        self.touched = False  # some of the rest was read: it cannot be sent again

    async def find_model(self) -> str:
        """Read parts up to the model's; its name."""
        while (part := await _next_part(self.reader)) is not None:
            if _names_model(part):
                start = self.stream.position
                value = await _read_value(part)
                self.read = self.stream.take_read()
                if self.read[start : start + len(value)] != value:  # never seen: aiohttp read it other than it came
                    raise BadRequest(FORM_ERROR + "cannot locate the model field in the form")
                self.value_at, self.value_length = start, len(value)
                try:
                    self.name = value.decode()
                except UnicodeDecodeError:
                    raise BadRequest("the form's model field is not UTF-8") from None
                if not self.name:
                    raise MissingModel()
                return self.name
            while not part.at_eof():
                await _read_chunk(part)
        raise MissingModel()

    def body_for(self, tag: str) -> bytes:
        """What was read, the model's value replaced by `tag`."""
        end = self.value_at + self.value_length
        return self.read[: self.value_at] + tag.encode() + self.read[end:]

    def length_for(self, tag: str) -> int | None:
        if self.declared_length is None:
            return None  # the client sends it chunked: so does the router
        return self.declared_length - self.value_length + len(tag.encode())

    async def rest(self) -> AsyncIterator[bytes]:
        """The rest of the body as it arrives, checked part by part."""
        self.touched = True
        stream = self.stream
        while (part := await _next_part(self.reader)) is not None:
            if _names_model(part):
                raise AmbiguousModel("the form has more than one model field")
            while not part.at_eof():
                await _read_chunk(part)
                yield stream.take_read()
        yield stream.take_read()
        while await stream.read_raw():
            yield stream.take_read()


async def transcribe(request: web.Request) -> web.StreamResponse:
    """POST /v1/audio/transcriptions."""
    mime = parse_mimetype(request.headers.get(hdrs.CONTENT_TYPE, ""))
    if (mime.type, mime.subtype) != ("multipart", "form-data") or not mime.parameters.get("boundary"):
        raise BadRequest(FORM_ERROR + "send multipart/form-data with a boundary")
    limits = runtime_of(request).body_reader
    if request.content_length is not None and request.content_length > limits.max_body_bytes:
        raise BodyTooLarge(limits.too_large)
    if any(key.casefold() == "model" for key in request.query):
        raise AmbiguousModel("the model goes in the form, not the query string (Ollama would prefer the query's)")
    stream = RecordingStream(request, limits)
    try:  # MultipartReader reads any stream with these methods
        reader = MultipartReader(request.headers, stream, max_field_size=MAX_LINE)  # type: ignore[arg-type]
    except ValueError as exc:
        raise BadRequest(FORM_ERROR + str(exc)[:200]) from None
    upload = FormUpload(request, stream, reader)
    name = await upload.find_model()
    record_of(request).name_model(name)
    return await forward_call(request, name, upload=upload)
