"""Reading a request's body: bounded in size and time, parsed once, and the
model it names read the way Ollama will read it.

Ollama decodes bodies with Go's encoding/json, which matches object keys to
struct fields case-insensitively and lets the last match win: a body with
`"model"` and `"Model"` names two models, and Ollama serves the second. The
router reads the exact key, so it refuses any body whose top level holds a
case variant of a model field (or the same field twice with different
values) rather than let an allowlist check one name while Ollama loads
another (docs/ollama-wire.md §1.2).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
import structlog
from aiohttp import web

from router.catalog.names import MAX_NAME_CHARS
from router.http.errors import AmbiguousField, AmbiguousModel, BadRequest, BodyTooLarge, MissingModel, ModelNameTooLong, RequestTimeout
from router.http.record import Record, cut

log = structlog.get_logger("router.access")

LOGGED_BODY_BYTES = 4096


class BodyReader:
    """Reads a request's body for its handler, bounded in size and time.

    Headers are bounded by the server's keep-alive timeout (router.server.runner).
    With `log_bodies` the body is logged (truncated); otherwise no log line ever
    holds request text.
    """

    __slots__ = ("body_timeout", "log_bodies", "max_body_bytes", "too_large")

    def __init__(self, max_body_bytes: int, body_timeout: float, log_bodies: bool = False) -> None:
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.log_bodies = log_bodies
        self.too_large = f"request body too large (limit {max_body_bytes} bytes)"

    async def read(self, request: web.Request, record: Record) -> bytes:
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            raise BodyTooLarge(self.too_large)
        try:
            if request.content.is_eof():  # the whole body came with the headers: nothing to wait for
                body = await request.read()
            else:
                async with asyncio.timeout(self.body_timeout):
                    body = await request.read()
        except TimeoutError:
            raise RequestTimeout(f"request body not received within {self.body_timeout:g}s") from None
        except web.HTTPRequestEntityTooLarge:
            raise BodyTooLarge(self.too_large) from None
        if self.log_bodies:
            log.info(
                "request_body",
                request_id=record.request_id,
                body=body[:LOGGED_BODY_BYTES].decode("utf-8", "replace"),
                truncated=len(body) > LOGGED_BODY_BYTES,
            )
        return body


def json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise BadRequest("missing request body")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"invalid JSON in request body: {exc}") from None
    if not isinstance(payload, dict):
        raise BadRequest("request body must be a JSON object")
    return payload


def model_name(payload: dict[str, Any], body: bytes, fields: tuple[str, ...] = ("model",)) -> tuple[str, str]:
    """The field that names the model, and the name; 400 when Ollama could read another one."""
    refuse_ambiguous(payload, body, fields)
    for name_field in fields:
        name = payload.get(name_field)
        if name is not None and name != "":
            break
    else:
        raise MissingModel()
    if not isinstance(name, str):
        raise BadRequest(f"'{name_field}' must be a string")
    if len(name) > MAX_NAME_CHARS:
        raise ModelNameTooLong(f"'{name_field}' is {len(name)} characters long; model names have at most {MAX_NAME_CHARS}")
    return name_field, name


def refuse_ambiguous(
    payload: dict[str, Any], body: bytes, fields: tuple[str, ...], error: type[AmbiguousField] = AmbiguousModel
) -> None:
    """400 when the body spells one of `fields` in another case, or twice with different values."""
    folded = {f.casefold() for f in fields}
    for key in payload:
        if key not in fields and key.casefold() in folded:
            raise error(
                f"the body has a key '{cut(key, 32)}', which Ollama would read as '{key.casefold()}': "
                "send that field once, in lower case"
            )
    # orjson and Go both let the last of two equal keys win, so duplicates cannot split the
    # router's reading from Ollama's; they are refused anyway when their values differ, since
    # no client means them. Only bodies that spell a field twice pay for the second parse.
    for name_field in fields:
        if body.count(b'"' + name_field.encode() + b'"') > 1:
            values = [value for key, value in _top_level_pairs(body) if key == name_field]
            if len(values) > 1 and any(value != values[0] for value in values):
                raise error(f"the body names '{name_field}' {len(values)} times with different values")


def _top_level_pairs(body: bytes) -> list[tuple[str, Any]]:
    top: list[tuple[str, Any]] = []

    def keep(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal top
        top = pairs  # called innermost first: the top-level object comes last
        return dict(pairs)

    json.loads(body, object_pairs_hook=keep)
    return top
