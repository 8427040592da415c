"""The ordered event log of one job, which any number of listeners follow (for server-sent events)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

TERMINAL_EVENTS = ("done", "failed", "cancelled")


@dataclass
class Event:
    """One event: its position in the job's log (from 1), its name and its JSON data."""

    seq: int
    name: str
    data: dict[str, Any]

    def encode(self) -> bytes:
        """The event in text/event-stream framing."""
        return f"id: {self.seq}\nevent: {self.name}\ndata: {json.dumps(self.data, ensure_ascii=False)}\n\n".encode()


class Channel:
    """Events of one job in order. Publish from the event loop's thread only."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.released = False
        self._wake = asyncio.Event()

    @property
    def closed(self) -> bool:
        """True once a terminal event (done, failed, cancelled) was published."""
        return bool(self.events) and self.events[-1].name in TERMINAL_EVENTS

    def publish(self, name: str, data: dict[str, Any]) -> None:
        """Append an event and wake every listener."""
        if self.closed:
            return
        self.events.append(Event(len(self.events) + 1, name, data))
        self._wake_all()

    def release(self) -> None:
        """End every follower now without a terminal event (the server is shutting down)."""
        self.released = True
        self._wake_all()

    def _wake_all(self) -> None:
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    async def follow(self, after: int = 0, heartbeat: float | None = None) -> AsyncIterator[Event | None]:
        """Every event after position `after`, then new ones as they come, until a terminal one;
        None after each `heartbeat` seconds without an event."""
        index = max(0, after)
        while True:
            while index < len(self.events):
                yield self.events[index]
                index += 1
            if self.closed or self.released:
                return
            try:
                await asyncio.wait_for(self._wake.wait(), heartbeat)
            except asyncio.TimeoutError:
                yield None
