"""Capacity and fairness, behind one interface the request path uses without
knowing where the counts live: each container's in-flight slots and queue,
each API key's concurrent requests and its token bucket.

`local.LocalLimits` keeps them in this process (the default).
`redis.RedisLimits` keeps them in Redis, shared by every router process that
names the same Redis and prefix (replicas, `--workers`), and falls back to
local limits (or refuses, when set to fail closed) while Redis is away.
"""

from router.limits.base import (
    ContainerGone,
    ContainerSlots,
    Limits,
    LimitsHealth,
    LimitsUnavailable,
    QueueFull,
    QueueTimeout,
)

__all__ = ["ContainerGone", "ContainerSlots", "Limits", "LimitsHealth", "LimitsUnavailable", "QueueFull", "QueueTimeout"]
