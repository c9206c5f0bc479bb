"""What one caller of the console may see of the fleet.

Without a keys file, and for an admin key: everything. Another key sees its
own models (its allowlist) and the containers that serve them, and nothing
else: no other model's name (a fallback to a model it may not use is left
out too), no other key's name, no container URLs or error texts, no catalog
or keys-file details. Events are kept when they concern one of its models, a
container serving one, or the key itself. Filtering happens in the router;
the page is never sent what it must not show.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from router.access.keys import ApiKey
from router.catalog import Catalog
from router.events import Event
from router.server.window import Window

# what a non-admin console gets of a container's status (no URL, no error texts)
CONTAINER_FIELDS = (
    "name", "gpus", "state", "version", "last_probe", "down_since", "ejected", "ejected_until", "ejections",
    "in_flight", "limit", "queued", "max_queue", "served", "failures",
)
# what a non-admin console does not get of an event: addresses and error texts (they may name internal hosts)
HIDDEN_EVENT_FIELDS = ("url", "reason", "error")


@dataclass(frozen=True, slots=True, eq=False)
class Scope:
    catalog: Catalog
    key: str | None  # the caller's key name; None without a keys file
    everything: bool
    models: frozenset[str]  # catalog tags the caller may use
    containers: frozenset[str]  # containers serving one of them

    @classmethod
    def of(cls, caller: ApiKey | None, catalog: Catalog) -> Scope:
        if caller is None or caller.admin:
            return cls(catalog, caller.name if caller else None, True, frozenset(), frozenset())
        allowed = [m for m in catalog.models.values() if caller.allows(m)]
        containers = frozenset(name for m in allowed for name in m.containers)
        return cls(catalog, caller.name, False, frozenset(m.tag for m in allowed), containers)

    def _allows(self, name: object) -> bool:
        model = self.catalog.resolve(name)
        return model is not None and model.tag in self.models

    def sees(self, event: Event) -> bool:
        if self.everything:
            return True
        fields = event.fields
        if "model" in fields:
            return self._allows(fields["model"])
        if "key" in fields:
            return bool(fields["key"] == self.key)
        if "container" in fields:
            return fields["container"] in self.containers
        return False  # fleet-wide events (catalog and keys reloads): admins only

    def shown(self, event: Event) -> dict[str, Any] | None:
        """The event as this caller may see it, or None."""
        if not self.sees(event):
            return None
        data = event.as_dict()
        if not self.everything:
            for name in HIDDEN_EVENT_FIELDS:
                data.pop(name, None)
            if "to" in data and not self._allows(data["to"]):
                del data["to"]  # a fallback it may not use itself
            if data.get("container") is not None and data["container"] not in self.containers:
                del data["container"]  # ... and where that fallback ran
        return data

    def viewer(self) -> dict[str, Any]:
        return {"key": self.key, "admin": self.everything}

    def narrow(self, snapshot: dict[str, Any], window: Window) -> dict[str, Any]:
        """The snapshot as this caller may see it."""
        if self.everything:
            return {**snapshot, "viewer": self.viewer()}
        figures = snapshot["window"]
        return {
            "ready": snapshot["ready"],
            "uptime_seconds": snapshot["uptime_seconds"],
            "now": snapshot["now"],
            "settings": snapshot["settings"],
            "viewer": self.viewer(),
            "containers": [self._container(c) for c in snapshot["containers"] if c["name"] in self.containers],
            "models": [
                {**m, "fallback": [f for f in m["fallback"] if self._allows(f)]}
                for m in snapshot["models"] if m["model"] in self.models
            ],
            "window": {
                "seconds": figures["seconds"],
                "total": window.combined(self.models),
                "containers": {n: f for n, f in figures["containers"].items() if n in self.containers},
                "models": {t: f for t, f in figures["models"].items() if t in self.models},
            },
        }

    def _container(self, status: dict[str, Any]) -> dict[str, Any]:
        shown = {name: status[name] for name in CONTAINER_FIELDS}
        shown["loaded"] = [m for m in status["loaded"] if self._allows(m["model"])]
        return shown
