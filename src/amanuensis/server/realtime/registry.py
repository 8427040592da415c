"""The realtime sessions open on a server: the limit, each session's lag, counters for /metrics and
/status, and the threads their decodes run in."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

ADMISSION_WAIT_S = 1.0
"""How long a session past the limit waits for a slot before it is refused: a client that closes a
session and opens the next at once may reach the server before the closed session's disconnect has
been handled."""


@dataclass
class SessionStats:
    """What /metrics shows of one open session."""

    lag_s: float = 0.0
    audio_s: float = 0.0
    turns: int = 0


class SessionRegistry:
    """Open sessions (at most `limit`), their stats, and the decode threads (two per session: one
    decode of the open turn and one final decode may run at once; decodes are short, and a session
    holds no thread while it waits for audio)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[str, SessionStats] = {}
        self.rejected = 0
        self._finals: collections.Counter[int] = collections.Counter()
        """Final decodes owed, per model replica (by id): while one is owed on a replica, no session on that
        replica decodes its open turn again (a final is what a speaker waits for; deltas can wait a step).
        Sessions on another replica (`--workers 2`) decode on: they do not hold that final back."""
        self.turns = 0
        self.audio_s = 0.0
        self.early_finals = {"final": 0, "resumed": 0, "cleared": 0}
        """Final decodes started at a pause, by what became of them: the turn's final decode; speech went
        on (its words were still confirmed); the turn was cleared."""
        self.shutting_down = False
        self.stops: dict[str, asyncio.Event] = {}
        """Per open session (made when it opens, so a shutdown reaches a session still starting up), set
        when the server shuts down: the session finishes its open turn and closes."""
        self._serial = itertools.count()
        self._lock = threading.Lock()
        self._freed: asyncio.Event | None = None
        self.executor = ThreadPoolExecutor(max(2, 2 * limit), thread_name_prefix="amanuensis-realtime")

    def try_open(self, session_id: str) -> int | None:
        """Register a session; returns its serial number, or None when `limit` sessions are open (or the
        server is shutting down)."""
        with self._lock:
            if len(self.open) >= self.limit or self.shutting_down:
                self.rejected += 1
                return None
            self.open[session_id] = SessionStats()
            self.stops[session_id] = asyncio.Event()
            return next(self._serial)

    async def admit(self, session_id: str, wait_s: float = ADMISSION_WAIT_S) -> int | None:
        """`try_open`, waiting up to `wait_s` for a slot to be freed (by `close`) when none is free."""
        deadline = time.monotonic() + wait_s
        while True:
            with self._lock:
                free = len(self.open) < self.limit or self.shutting_down
            left = deadline - time.monotonic()
            if free or left <= 0:
                return self.try_open(session_id)
            self._freed = self._freed or asyncio.Event()
            self._freed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._freed.wait()

    def close(self, session_id: str) -> None:
        """Forget a session (its slot is free at once)."""
        with self._lock:
            self.open.pop(session_id, None)
            self.stops.pop(session_id, None)
        if self._freed is not None:
            self._freed.set()

    async def finish(self, timeout_s: float) -> int:
        """The server is shutting down: ask every open session to finish its open turn (its `.completed`
        sent) and close; wait up to `timeout_s` for them. Returns how many were still open then."""
        self.shutting_down = True
        for stop in list(self.stops.values()):
            stop.set()
        deadline = time.monotonic() + timeout_s
        while self.open and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return len(self.open)

    def set_lag(self, session_id: str, lag_s: float) -> None:
        """Record a session's current lag."""
        stats = self.open.get(session_id)
        if stats is not None:
            stats.lag_s = round(lag_s, 3)

    def finals_pending_on(self, replica: object) -> int:
        """Final decodes owed on `replica` (a Transcriber)."""
        return self._finals[id(replica)]

    def final_waiting(self, change: int, replica: object) -> None:
        """+1 when a final decode is owed on `replica` (a turn closed, or one started at a pause: partial
        decodes there wait for it), -1 when one is no longer owed (the turn dropped, the early decode done)."""
        with self._lock:
            self._finals[id(replica)] += change

    def early_outcome(self, outcome: str) -> None:
        """Count what became of a final decode started at a pause (a key of `early_finals`)."""
        with self._lock:
            self.early_finals[outcome] += 1

    def turn_done(self, session_id: str, audio_s: float, replica: object) -> None:
        """Count a finished turn of `audio_s` seconds (its final decode on `replica` is done)."""
        with self._lock:
            self._finals[id(replica)] -= 1
            self.turns += 1
            self.audio_s += audio_s
            stats = self.open.get(session_id)
            if stats is not None:
                stats.turns += 1
                stats.audio_s += audio_s

    def snapshot(self) -> dict:
        """Open sessions and their lag, limit, rejections, turns and audio (for /metrics and /status)."""
        with self._lock:
            lags = {sid: stats.lag_s for sid, stats in self.open.items()}
            return {"open": len(lags), "limit": self.limit, "rejected": self.rejected, "turns": self.turns,
                    "audio_seconds": round(self.audio_s, 3), "lag_s": lags,
                    "max_lag_s": max(lags.values(), default=0.0), "early_finals": dict(self.early_finals)}

    def shutdown(self) -> None:
        """Stop the decode threads once their work is done."""
        self.executor.shutdown(wait=True, cancel_futures=True)
