"""A realtime session's server events on their way to the client, with back-pressure.

One sender task writes the events in the order they were made. A client that does not read holds
that sender: every send must finish within `send_timeout_s`, and the session stops reading the
client's events while `limit` events are waiting (each client event may owe an answer, so a client
that floods the server without reading is held back instead of growing the queue). A send that
times out, or a full queue that does not drain within `send_timeout_s`, marks the client `stalled`:
the session then ends at once.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

log = logging.getLogger(__name__)

OUTBOX_EVENTS = 64
"""Events that may wait for the client before the session stops reading its events."""


class Outbox:
    """Server events queued for one client, and the task that sends them."""

    def __init__(self, websocket: WebSocket, session_id: str, send_timeout_s: float,
                 limit: int = OUTBOX_EVENTS) -> None:
        self.ws = websocket
        self.session_id = session_id
        self.send_timeout_s = send_timeout_s
        self.limit = limit
        self.stalled = asyncio.Event()
        """Set when the client took no event for `send_timeout_s` seconds while events were owed."""
        self._queue: asyncio.Queue[dict | None] = asyncio.Queue()
        self._drained = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Start sending."""
        self._task = asyncio.create_task(self._send_all())

    def emit(self, event: dict) -> None:
        """Queue `event` (dropped once the client is stalled: nothing more reaches it)."""
        if not self.stalled.is_set():
            self._queue.put_nowait(event)
            self._drained.clear()

    def waiting(self) -> int:
        """Events queued and not yet sent."""
        return self._queue.qsize()

    async def room(self) -> bool:
        """Wait until fewer than `limit` events wait for the client; False (and `stalled` set) when
        that takes longer than `send_timeout_s`."""
        if self._queue.qsize() < self.limit:
            return not self.stalled.is_set()
        try:
            async with asyncio.timeout(self.send_timeout_s):
                while self._queue.qsize() >= self.limit and not self.stalled.is_set():
                    self._drained.clear()
                    await self._drained.wait()
        except TimeoutError:
            self._stall(f"{self._queue.qsize()} events waiting")
        return not self.stalled.is_set()

    async def close(self) -> None:
        """Send what is queued (unless the client is stalled), then stop the sender."""
        self._queue.put_nowait(None)
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    def abandon(self) -> None:
        """Stop the sender now and drop what is queued."""
        if self._task is not None:
            self._task.cancel()
        while not self._queue.empty():
            self._queue.get_nowait()

    async def _send_all(self) -> None:
        while (event := await self._queue.get()) is not None:
            if self._queue.qsize() < self.limit:
                self._drained.set()
            if self.stalled.is_set() or self.ws.client_state != WebSocketState.CONNECTED:
                continue
            try:
                async with asyncio.timeout(self.send_timeout_s):
                    await self.ws.send_json(event)
            except TimeoutError:
                self._stall("a send did not finish")
            except (WebSocketDisconnect, RuntimeError, OSError):
                log.debug("realtime session %s: client gone while sending", self.session_id)
        self._drained.set()

    def _stall(self, why: str) -> None:
        if not self.stalled.is_set():
            log.warning("realtime session %s: the client takes no events (%s within %g s); closing it",
                        self.session_id, why, self.send_timeout_s)
            self.stalled.set()
            self._drained.set()
