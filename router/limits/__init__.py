"""Capacity and fairness, behind one interface the request path uses without
knowing where the counts live: each container's in-flight slots and queue,
each API key's concurrent requests and its token bucket.

`local.LocalLimits` keeps them in this process (the default). A shared
implementation (several router processes) implements the same `Limits`.
"""

from router.limits.base import ContainerGone, ContainerSlots, Limits, QueueFull, QueueTimeout

__all__ = ["ContainerGone", "ContainerSlots", "Limits", "QueueFull", "QueueTimeout"]
