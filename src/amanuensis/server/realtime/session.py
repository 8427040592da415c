"""One realtime transcription session on a WebSocket: events in, audio into turns, live decodes of
the open turn (deltas of the words two decodes agree on), one final decode per turn (`.completed`).

Three tasks share the session: the receiver (events, audio, VAD), the partial decoder (the open
turn, again and again, as the step policy says) and the final decoder (closed turns, in order).
One sender writes every server event, so events leave in the order they were made. When the
receiver ends (the client left, or the idle timeout closed the session) the open turn is closed,
its final decode runs, and the session waits for it before the socket is closed.

The `.completed` transcript comes from one decode of the whole turn, so it may differ from the
concatenated deltas: deltas are confirmed early from partial audio, and where the full decode reads a
word differently the final text wins. The deltas are never retracted; a last delta after the final
decode adds the words the deltas had not reached yet, so a client that only shows deltas ends each
turn with the final words too. That decode starts when the speaker pauses (`speech_paused`): if the
turn then stops, it is the turn's final decode; if speech resumes, its words still become deltas
and the open turn's window starts at the pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ...asr.live_turns import LiveTurns
from ...asr.streaming import StreamingPolicy, TurnBuffer, TurnStream
from ...asr.turn_final import EarlyFinal, FinalPolicy
from ...constants import SAMPLE_RATE
from ...errors import AmanuensisError, OptionsError
from ...pipeline import Transcriber
from .codecs import AudioFormatError, InputDecoder
from .config import SessionConfig, apply_update, transcribe_options
from .decoding import ClosedTurn, TurnDecoding
from .protocol import (
    Append,
    BetaSessionUpdate,
    BufferEvent,
    ProtocolError,
    SessionUpdate,
    decode_base64,
    error_event,
    new_id,
    parse_event,
    server_event,
)
from .sessions import RealtimeSessions

log = logging.getLogger(__name__)

MAX_TURN_SECONDS = 900.0
"""A turn longer than this is committed (server VAD) or refused further audio (manual commit)."""
CLOSE_IDLE = 1008
CLOSE_GOING_AWAY = 1001
PREROLL_SECONDS = 5
"""Audio kept between turns: the longest prefix_padding_ms a session may ask for."""


def _ms(samples: int) -> int:
    return int(samples * 1000 // SAMPLE_RATE)


class RealtimeSession(TurnDecoding):
    """The state and tasks of one session; `run()` drives it until the socket closes."""

    def __init__(self, websocket: WebSocket, *, session_id: str, sessions: RealtimeSessions, pool: object,
                 slot: int, config: SessionConfig, idle_timeout: float, policy: StreamingPolicy | None = None
                 ) -> None:
        self.ws = websocket
        self.id = session_id
        self.sessions = sessions
        self.pool = pool
        self.slot = slot
        self.config = config
        self.idle_timeout = idle_timeout
        self.policy = policy or StreamingPolicy()
        self.transcriber: Transcriber | None = None
        self.model_name = ""
        self.input = InputDecoder(config.format)
        self.buffer = TurnBuffer(keep=PREROLL_SECONDS * SAMPLE_RATE)
        self.turns = LiveTurns(config.turn_detection) if config.turn_detection else None
        self.item_id: str | None = None
        self.previous_item_id: str | None = None
        self.stream: TurnStream | None = None
        self.early: EarlyFinal | None = None
        self.final_policy = FinalPolicy()
        self.out: asyncio.Queue[dict | None] = asyncio.Queue()
        self.finals: asyncio.Queue[ClosedTurn | None] = asyncio.Queue()
        self.pending_finals: list[ClosedTurn] = []
        self.wake = asyncio.Event()
        self.stop = sessions.stops[session_id]
        """Set when the server shuts down: the session ends as after an idle timeout (open turn finished)."""
        self.loop = asyncio.get_running_loop()

    # -- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the session; closes the socket (with a reason) when it ends."""
        self.transcriber, self.model_name = await self._transcriber(self.config.model)
        sender = asyncio.create_task(self._sender())
        partials = asyncio.create_task(self._partials())
        finals = asyncio.create_task(self._finals())
        await self.send(server_event("session.created", session=self._session()))
        close: tuple[int, str, str] | None = None
        try:
            close = await self._receive()
        finally:
            self._close_turn(self.buffer.received, flush=True)
            await self.finals.put(None)
            with contextlib.suppress(Exception):
                await finals
            for turn in self.pending_finals:  # turns whose final decode never ran (the task failed)
                self.sessions.final_waiting(-1, turn.transcriber)
            if close is not None:  # said after the open turn's `.completed`, just before the close
                await self.send(error_event(ProtocolError(close[1], None, close[2])))
            partials.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await partials
            await self.out.put(None)
            with contextlib.suppress(Exception):
                await sender
            if close is not None and self.ws.client_state == WebSocketState.CONNECTED:
                with contextlib.suppress(Exception):
                    await self.ws.close(close[0], close[1])

    async def send(self, event: dict) -> None:
        """Queue a server event for the sender."""
        await self.out.put(event)

    async def _sender(self) -> None:
        while (event := await self.out.get()) is not None:
            if self.ws.client_state != WebSocketState.CONNECTED:
                continue
            try:
                await self.ws.send_json(event)
            except (WebSocketDisconnect, RuntimeError, OSError):
                log.debug("realtime session %s: client gone while sending", self.id)

    async def _receive(self) -> tuple[int, str, str] | None:
        """Handle client events until the client leaves (None), goes idle or the server shuts down ((close
        code, reason, error code))."""
        stopped = asyncio.ensure_future(self.stop.wait())
        try:
            while True:
                receiving = asyncio.ensure_future(self.ws.receive())
                done, _ = await asyncio.wait({receiving, stopped}, timeout=self.idle_timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
                if receiving not in done:
                    receiving.cancel()
                    with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                        await receiving
                    if stopped in done:
                        return CLOSE_GOING_AWAY, "the server is shutting down", "server_shutdown"
                    return CLOSE_IDLE, f"idle timeout: no event for {self.idle_timeout:g} s", "idle_timeout"
                try:
                    message = receiving.result()
                except (WebSocketDisconnect, RuntimeError):
                    return None
                if await self._take(message):
                    return None
        finally:
            stopped.cancel()

    async def _take(self, message: dict) -> bool:
        """Handle one ASGI message; True when it says the client left."""
        if message["type"] == "websocket.disconnect":
            return True
        data = message.get("text")
        if data is None:
            data = message.get("bytes") or b""
        try:
            await self._handle(parse_event(data))
        except ProtocolError as exc:
            await self.send(error_event(exc))
        return False

    async def _handle(self, event: object) -> None:
        if isinstance(event, Append):
            await self._append(event)
        elif isinstance(event, (SessionUpdate, BetaSessionUpdate)):
            await self._update(event)
        elif isinstance(event, BufferEvent) and event.type == "input_audio_buffer.commit":
            self._commit(event)
        elif isinstance(event, BufferEvent):
            self._clear()

    # -- events ----------------------------------------------------------------------------------

    async def _update(self, event: SessionUpdate | BetaSessionUpdate) -> None:
        config, params = apply_update(self.config, event)
        transcriber, name = self.transcriber, self.model_name
        if config.model != self.config.model:
            try:
                transcriber, name = await self._transcriber(config.model)
            except AmanuensisError as exc:
                raise ProtocolError(str(exc), params["model"], "model_not_found", event.event_id) from exc
        try:
            transcribe_options(config, partial=False).validate(transcriber.info)
        except OptionsError as exc:
            raise ProtocolError(str(exc), params.get(exc.param or "", exc.param), "invalid_value",
                                event.event_id) from exc
        if config.format != self.config.format:
            self._take_audio(self.input.flush(), [])
            self.input = InputDecoder(config.format)
        if config.turn_detection != self.config.turn_detection:
            self.turns = LiveTurns(config.turn_detection) if config.turn_detection else None
        self.config, self.transcriber, self.model_name = config, transcriber, name
        if isinstance(event, BetaSessionUpdate):
            await self.send(server_event("transcription_session.updated", session=self.config.describe_beta(name)))
        else:
            await self.send(server_event("session.updated", session=self._session()))

    async def _append(self, event: Append) -> None:
        data = decode_base64(event)
        try:
            samples, vad_events = await asyncio.to_thread(self._ingest, data)
        except AudioFormatError as exc:
            raise ProtocolError(str(exc), "audio", "invalid_audio", event.event_id) from exc
        if self.turns is None and self.stream is not None:
            held = len(self.buffer.turn_audio()) / SAMPLE_RATE
            if held + len(samples) / SAMPLE_RATE > MAX_TURN_SECONDS:
                raise ProtocolError(f"the input audio buffer holds {held:.0f} s; commit it before appending more "
                                    f"(at most {MAX_TURN_SECONDS:g} s a turn)", "audio", "buffer_full", event.event_id)
        self._take_audio(samples, vad_events)

    def _ingest(self, data: bytes) -> tuple[np.ndarray, list]:
        """In a worker thread: bytes → 16 kHz samples → VAD events."""
        samples = self.input.decode(data)
        return samples, (self.turns.feed(samples) if self.turns is not None else [])

    def _take_audio(self, samples: np.ndarray, vad_events: list) -> None:
        """Append samples to the buffer, opening and closing turns where the VAD said."""
        base = self.buffer.received
        done = 0
        for vad in vad_events:
            upto = max(done, min(len(samples), vad.sample - base))
            self.buffer.append(samples[done:upto])
            done = upto
            if vad.kind == "speech_started" and self.stream is None:
                start = self.buffer.start_turn(vad.sample)
                self._open_turn()
                self._emit(server_event("input_audio_buffer.speech_started", audio_start_ms=_ms(start),
                                        item_id=self.item_id))
            elif vad.kind == "speech_paused" and self.stream is not None:
                self._start_early_final(vad.sample)
            elif vad.kind == "speech_resumed":
                self._detach_early_final()
            elif vad.kind == "speech_stopped" and self.stream is not None:
                self._emit(server_event("input_audio_buffer.speech_stopped", audio_end_ms=_ms(vad.sample),
                                        item_id=self.item_id))
                self._close_turn(vad.sample)
        rest = samples[done:]
        if len(rest) and self.turns is None and self.stream is None:
            self.buffer.start_turn(self.buffer.received)
            self._open_turn()
        self.buffer.append(rest)
        if self.stream is not None and len(self.buffer.turn_audio()) > MAX_TURN_SECONDS * SAMPLE_RATE:
            self._close_turn(self.buffer.received)
        self._track_lag()
        self.wake.set()

    def _commit(self, event: BufferEvent) -> None:
        self._take_audio(self.input.flush(), [])
        if self.stream is None or not len(self.buffer.turn_audio()):
            raise ProtocolError("the input audio buffer is empty: append audio before committing", None,
                                "input_audio_buffer_commit_empty", event.event_id)
        self._close_turn(self.buffer.received)
        if self.turns is not None:
            self.turns.in_speech = False

    def _clear(self) -> None:
        self._detach_early_final(resumed=False)
        self.buffer.clear()
        self.stream = None
        self.item_id = None
        if self.turns is not None:
            self.turns.in_speech = False
        self._emit(server_event("input_audio_buffer.cleared"))

    # -- turns -----------------------------------------------------------------------------------

    def _open_turn(self) -> None:
        self.item_id = new_id("item")
        self.stream = TurnStream(self.policy, self.config.prompt)

    def _close_turn(self, end: int, flush: bool = False) -> None:
        """Commit the open turn up to `end`: `committed` now, its final decode queued."""
        if flush:
            self._take_audio(self.input.flush(), [])
            end = self.buffer.received
        if self.stream is None or self.item_id is None:
            return
        start, audio = self.buffer.take_turn(end)
        early = self.early.result if self.early is not None and self.early.covers(self.item_id) else None
        if early is not None:
            self.sessions.early_outcome("final")
            self.early = None
        self._detach_early_final()
        turn = ClosedTurn(self.item_id, start, audio, list(self.stream.confirmed), self.config, self.transcriber,
                          time.monotonic(), early)
        self._emit(server_event("input_audio_buffer.committed", item_id=self.item_id,
                                previous_item_id=self.previous_item_id))
        self.previous_item_id, self.item_id, self.stream = self.item_id, None, None
        self.pending_finals.append(turn)
        self.sessions.final_waiting(+1, turn.transcriber)
        self.finals.put_nowait(turn)

    def _emit(self, event: dict) -> None:
        self.out.put_nowait(event)

    def _track_lag(self) -> None:
        lag = self.stream.lag_s(len(self.buffer.turn_audio())) if self.stream is not None else 0.0
        if self.pending_finals:
            lag = max(lag, time.monotonic() - self.pending_finals[0].closed_at)
        self.sessions.set_lag(self.id, lag)

    def _session(self) -> dict:
        return {"id": self.id, **self.config.describe(self.model_name)}
