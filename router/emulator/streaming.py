"""Writing a job's tokens as a stream, headers only with the first chunk (1.5).

Both APIs use this: they differ only in how a token (answer or reasoning),
tool calls, the end and a mid-stream failure are framed (`Framing`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from router.emulator.engine import Engine, Job
from router.emulator.errors import ApiError, StreamCut


@dataclass(slots=True)
class Framing:
    content_type: str
    token: Callable[[str], bytes]  # one chunk per generated token
    end: Callable[[], bytes]  # everything after the last token (final line, [DONE]...)
    cut: Callable[[str], bytes]  # what a mid-stream failure leaves on the wire
    error: Callable[[ApiError], web.StreamResponse]  # failure before the first byte
    thinking: Callable[[str], bytes] | None = None  # one chunk per reasoning token
    tools: Callable[[list[dict[str, Any]]], bytes] | None = None  # the tool calls, in one chunk
    headers: dict[str, str] | None = None  # sent besides Content-Type


async def stream_job(
    request: web.Request, engine: Engine, job: Job, framing: Framing
) -> web.StreamResponse:
    response: web.StreamResponse | None = None

    async def send(chunk: bytes) -> None:
        nonlocal response
        if response is None:
            response = web.StreamResponse(headers={**(framing.headers or {}), "Content-Type": framing.content_type})
            await response.prepare(request)
        await response.write(chunk)

    tokens = engine.stream(job)
    try:
        index = 0
        async for token in tokens:
            if index < job.thinking and framing.thinking is not None:
                await send(framing.thinking(token))
            else:
                await send(framing.token(token))
            index += 1
        if job.tool_calls and framing.tools is not None:
            await send(framing.tools(job.tool_calls))
        await send(framing.end())
    except ApiError as exc:
        if response is None:
            return framing.error(exc)
        await response.write(framing.cut(exc.message))
    except StreamCut as cut:
        await send(framing.cut(cut.message))
    except ConnectionResetError:
        # The client left between two chunks: generation stops here (1.5). As a
        # cancellation, the stats wrapper counts it once and aiohttp drops it quietly.
        raise asyncio.CancelledError from None
    finally:
        await tokens.aclose()
        engine.release(job)
    assert response is not None
    await response.write_eof()
    return response
