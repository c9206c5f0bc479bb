"""Fault injection: failures armed by tests through `/_emulator/faults`.

A fault matches the next `count` model requests (generate, chat, embed,
embeddings and their /v1 forms, /v1/responses, /v1/messages,
/v1/audio/transcriptions) whose model equals `model` (any model when
absent) and whose path equals `path` (any path when absent); a negative
count matches until the faults are cleared. `load_fail` is different: it
is consumed by the next model *load* instead of a request.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

from router.catalog.names import InvalidModelName, parse_model_name
from router.wire import BUSY_MESSAGE

KINDS = ("error", "busy", "hang", "cut", "slow", "load_fail")
DEFAULT_MESSAGES = {
    "error": "an error was encountered while running the model: emulated failure",
    "busy": BUSY_MESSAGE,
    "cut": "an error was encountered while running the model: unexpected EOF",
    "load_fail": "llama runner process has terminated: error loading model: emulated load failure",
}
DEFAULT_STATUS = {"busy": 503}


class FaultSpecError(ValueError):
    pass


@dataclass(slots=True)
class Fault:
    id: int
    kind: str
    count: int
    model: str | None = None
    path: str | None = None
    status: int = 500
    message: str = ""
    after_tokens: int = 1
    delay: float = 0.0
    model_key: str | None = None

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        del data["model_key"]
        return data


def _number(spec: dict[str, Any], field: str, default: float, kind: type) -> Any:
    value = spec.get(field, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FaultSpecError(f"{field} must be a number")
    return kind(value)


class FaultBook:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(self, spec: object) -> Fault:
        if not isinstance(spec, dict):
            raise FaultSpecError("fault must be a JSON object")
        kind = spec.get("kind")
        if kind not in KINDS:
            raise FaultSpecError(f"kind must be one of {', '.join(KINDS)}")
        model = spec.get("model")
        model_key = None
        if model is not None:
            if not isinstance(model, str):
                raise FaultSpecError("model must be a string")
            try:
                model_key = parse_model_name(model).key
            except InvalidModelName as exc:
                raise FaultSpecError("invalid model name") from exc
        path = spec.get("path")
        if path is not None and not isinstance(path, str):
            raise FaultSpecError("path must be a string")
        message = spec.get("message") or DEFAULT_MESSAGES.get(kind, "")
        if not isinstance(message, str):
            raise FaultSpecError("message must be a string")
        fault = Fault(
            id=next(self._ids),
            kind=kind,
            count=_number(spec, "count", 1, int),
            model=model,
            path=path,
            status=_number(spec, "status", DEFAULT_STATUS.get(kind, 500), int),
            message=message,
            after_tokens=max(0, _number(spec, "after_tokens", 1, int)),
            delay=max(0.0, _number(spec, "delay", 0.0, float)),
            model_key=model_key,
        )
        if fault.count == 0:
            raise FaultSpecError("count must not be 0")
        self._faults.append(fault)
        return fault

    def clear(self) -> int:
        cleared = len(self._faults)
        self._faults.clear()
        return cleared

    def listing(self) -> list[dict[str, Any]]:
        return [f.public() for f in self._faults]

    def _take(self, model_key: str, path: str | None, loads: bool) -> Fault | None:
        for fault in self._faults:
            if (fault.kind == "load_fail") != loads:
                continue
            if fault.model_key is not None and fault.model_key != model_key:
                continue
            if fault.path is not None and path is not None and fault.path != path:
                continue
            if fault.count > 0:
                fault.count -= 1
                if fault.count == 0:
                    self._faults.remove(fault)
            return fault
        return None

    def for_request(self, model_key: str, path: str) -> Fault | None:
        """The fault the next request on this model and path meets (consumed), if any."""
        if not self._faults:  # hot path: nothing armed
            return None
        return self._take(model_key, path, loads=False)

    def for_load(self, model_key: str) -> Fault | None:
        if not self._faults:
            return None
        return self._take(model_key, None, loads=True)
