"""The test-only control surface: /_emulator/faults and /_emulator/stats."""

from __future__ import annotations

import orjson
from aiohttp import web

from router.emulator.faults import FaultSpecError
from router.emulator.responses import plain_json
from router.emulator.state import Emulator


class AdminApi:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    async def add_fault(self, request: web.Request) -> web.Response:
        """POST {"kind", "count"?, "model"?, "path"?, "status"?, "message"?, "after_tokens"?, "delay"?}."""
        try:
            spec = orjson.loads(await request.read() or b"null")
            fault = self.emulator.faults.add(spec)
        except (orjson.JSONDecodeError, FaultSpecError) as exc:
            return plain_json({"error": str(exc)}, 400)
        return plain_json(fault.public())

    async def list_faults(self, request: web.Request) -> web.Response:
        return plain_json({"faults": self.emulator.faults.listing()})

    async def clear_faults(self, request: web.Request) -> web.Response:
        return plain_json({"cleared": self.emulator.faults.clear()})

    async def stats(self, request: web.Request) -> web.Response:
        return plain_json(self.emulator.stats.snapshot())
