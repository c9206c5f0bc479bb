"""A strictly FIFO counting semaphore with an await-free fast path.

asyncio.Semaphore lets a newcomer overtake waiters in some Python versions;
Ollama's per-model semaphore is a FIFO wait with no depth limit (7.4).
"""

from __future__ import annotations

import asyncio
from collections import deque


class Slots:
    __slots__ = ("_waiters", "free")

    def __init__(self, size: int) -> None:
        self.free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

    def try_acquire(self) -> bool:
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return True
        return False

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted just as the client left: pass it on
            else:
                try:
                    self._waiters.remove(waiter)
                except ValueError:  # already skipped by release()
                    pass
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.free += 1
