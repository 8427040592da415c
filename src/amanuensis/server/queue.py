"""Fair admission to a fixed number of workers: waiting requests are served round-robin across
clients and first-come-first-served within one client; past `max_waiting` a request is refused."""

from __future__ import annotations

import asyncio
from collections import deque


class QueueFull(Exception):
    """Raised by acquire() when `max_waiting` requests are already waiting."""

    def __init__(self, depth: int) -> None:
        super().__init__(f"{depth} requests waiting")
        self.depth = depth


class FairQueue:
    """Hands out worker slots (0..workers-1). Use only from the event loop's thread."""

    def __init__(self, workers: int, max_waiting: int) -> None:
        self.workers = workers
        self.max_waiting = max_waiting
        self._free: list[int] = list(range(workers - 1, -1, -1))
        self._waiting: dict[str, deque[asyncio.Future[int]]] = {}
        self._turns: deque[str] = deque()

    @property
    def depth(self) -> int:
        """Requests waiting for a worker."""
        return sum(len(waiters) for waiters in self._waiting.values())

    @property
    def running(self) -> int:
        """Workers busy now."""
        return self.workers - len(self._free)

    async def acquire(self, client: str) -> int:
        """Wait for a free worker slot and return its number; raises QueueFull when too many wait."""
        if self._free and not self._waiting:
            return self._free.pop()
        depth = self.depth
        if depth >= self.max_waiting:
            raise QueueFull(depth)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(client, deque()).append(future)
        if client not in self._turns:
            self._turns.append(client)
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(future.result())  # the slot arrived as we were cancelled: pass it on
            else:
                self._forget(client, future)
            raise

    def release(self, slot: int) -> None:
        """Give `slot` to the next waiting client in turn, or mark it free."""
        while self._turns:
            client = self._turns.popleft()
            waiters = self._waiting[client]
            future = waiters.popleft()
            if waiters:
                self._turns.append(client)
            else:
                del self._waiting[client]
            if not future.done():
                future.set_result(slot)
                return
        self._free.append(slot)

    def _forget(self, client: str, future: asyncio.Future[int]) -> None:
        waiters = self._waiting.get(client)
        if waiters is None or future not in waiters:
            return
        waiters.remove(future)
        if not waiters:
            del self._waiting[client]
            self._turns.remove(client)
