"""One realtime transcription session on a WebSocket: events in, audio into turns, live decodes of
the open turn (deltas of the words two decodes agree on), one final decode per turn (`.completed`).

The session takes the client's events (the receiver: events, audio, VAD) and owns two collaborators:
a `TurnDecoder` (turn_decoder.py: the open turn's decodes and each closed turn's final decode) and an
`Outbox` (outbox.py: one sender writes every server event, in the order they were made, and a client
that does not read is found out). When the idle timeout or a shutdown ends the session, the open turn
is closed, its final decode runs, and the session waits for it before the socket is closed. When the
client leaves, or takes no events for the send timeout, the session ends at once: its slot, audio and
decodes are released without waiting for anything.

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

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ...asr.live.streaming import StreamingPolicy, TurnBuffer
from ...asr.live.turns import LiveTurns, TurnDetection
from ...constants import SAMPLE_RATE
from ...errors import AmanuensisError, OptionsError
from ...pipeline import Transcriber
from .codecs import AudioFormatError, InputDecoder
from .config import SessionConfig, apply_update, transcribe_options
from .outbox import Outbox
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
from .registry import SessionRegistry
from .turn_decoder import Recognizer, TurnDecoder

log = logging.getLogger(__name__)

MAX_TURN_SECONDS = 900.0
"""A turn longer than this is committed (server VAD) or refused further audio (manual commit)."""
CLOSE_POLICY = 1008
"""Close code of an idle client and of one that does not read its events."""
CLOSE_GOING_AWAY = 1001
PREROLL_SECONDS = 5
"""Audio kept between turns: the longest prefix_padding_ms a session may ask for."""
STALLED_CLOSE_S = 1.0
"""How long the close frame to a client that does not read may wait to be written."""


def _ms(samples: int) -> int:
    return int(samples * 1000 // SAMPLE_RATE)


class RealtimeSession:
    """The intake of one session (events, audio, turns) and its collaborators; `run()` drives it until
    the socket closes."""

    def __init__(self, websocket: WebSocket, *, session_id: str, registry: SessionRegistry, pool: object,
                 slot: int, config: SessionConfig, idle_timeout: float, send_timeout: float,
                 policy: StreamingPolicy | None = None) -> None:
        self.ws = websocket
        self.id = session_id
        self.registry = registry
        self.pool = pool
        self.slot = slot
        self.config = config
        self.idle_timeout = idle_timeout
        self.policy = policy or StreamingPolicy()
        self.input = InputDecoder(config.format)
        self.buffer = TurnBuffer(keep=PREROLL_SECONDS * SAMPLE_RATE)
        self.turns = LiveTurns(config.turn_detection) if config.turn_detection else None
        self.previous_item_id: str | None = None
        self.outbox = Outbox(websocket, session_id, send_timeout)
        self.decoder: TurnDecoder | None = None
        self.stop = registry.stops[session_id]
        """Set when the server shuts down: the session ends as after an idle timeout (open turn finished)."""

    # -- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the session; closes the socket (with a reason) when it ends."""
        transcriber, name = await self._transcriber(self.config.model)
        self.decoder = TurnDecoder(self.id, self.registry, self.buffer, Recognizer(self.config, transcriber, name),
                                   self.outbox.emit, scores=self._speech_scores)
        self.outbox.start()
        self.decoder.start()
        self.outbox.emit(server_event("session.created", session=self._session()))
        close: tuple[int, str, str] | None = None
        try:
            close = await self._receive()
        finally:
            if close is None or self.outbox.stalled.is_set():
                await self._release(close)
            else:
                await self._finish(close)

    async def _finish(self, close: tuple[int, str, str]) -> None:
        """The server ends the session (idle, shutdown): the open turn's `.completed`, the reason, the close."""
        self._close_turn(self.buffer.received, flush=True)
        await self.decoder.finish()
        self.outbox.emit(error_event(ProtocolError(close[1], None, close[2])))  # after the open turn's `.completed`
        await self.outbox.close()
        if self.ws.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await self.ws.close(close[0], close[1])

    async def _release(self, close: tuple[int, str, str] | None) -> None:
        """The client left, or takes no events: free the slot, the audio and the decodes now, then close
        the socket of a stalled client (if its close frame can still be written)."""
        self.registry.close(self.id)
        self.decoder.abandon()
        self.outbox.abandon()
        self.buffer.clear()
        if close is not None and self.ws.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(STALLED_CLOSE_S):
                    await self.ws.close(close[0], close[1])

    def send(self, event: dict) -> None:
        """Queue a server event."""
        self.outbox.emit(event)

    async def _transcriber(self, name: str | None) -> tuple[Transcriber, str]:
        info = await asyncio.to_thread(self.pool.resolve, name)
        transcriber = await asyncio.to_thread(self.pool.hold, self.id, info, self.slot)
        return transcriber, info.name

    async def _receive(self) -> tuple[int, str, str] | None:
        """Handle client events until the client leaves (None), goes idle, stops reading its events or the
        server shuts down ((close code, reason, error code))."""
        stopped = asyncio.ensure_future(self.stop.wait())
        stalled = asyncio.ensure_future(self.outbox.stalled.wait())
        stalled_close = (CLOSE_POLICY, f"the client took no event for {self.outbox.send_timeout_s:g} s",
                         "send_timeout")
        try:
            while True:
                if not await self.outbox.room():
                    return stalled_close
                receiving = asyncio.ensure_future(self.ws.receive())
                done, _ = await asyncio.wait({receiving, stopped, stalled}, timeout=self.idle_timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
                if receiving not in done:
                    receiving.cancel()
                    with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                        await receiving
                    if stalled in done:
                        return stalled_close
                    if stopped in done:
                        return CLOSE_GOING_AWAY, "the server is shutting down", "server_shutdown"
                    return CLOSE_POLICY, f"idle timeout: no event for {self.idle_timeout:g} s", "idle_timeout"
                try:
                    message = receiving.result()
                except (WebSocketDisconnect, RuntimeError):
                    return None
                if await self._take(message):
                    return None
        finally:
            stopped.cancel()
            stalled.cancel()

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
            self.send(error_event(exc))
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
        current = self.decoder.recognizer
        transcriber, name = current.transcriber, current.model_name
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
            self._take_flushed()
            self.input = InputDecoder(config.format)
        if config.turn_detection != self.config.turn_detection:
            self._detect_turns(config.turn_detection)
        self.config = config
        self.decoder.recognizer = Recognizer(config, transcriber, name)
        if isinstance(event, BetaSessionUpdate):
            self.send(server_event("transcription_session.updated", session=config.describe_beta(name)))
        else:
            self.send(server_event("session.updated", session=self._session()))

    async def _append(self, event: Append) -> None:
        data = decode_base64(event)
        try:
            samples, vad_events = await asyncio.to_thread(self._ingest, data)
        except AudioFormatError as exc:
            raise ProtocolError(str(exc), "audio", "invalid_audio", event.event_id) from exc
        if self.turns is None and self.decoder.turn is not None:
            held = len(self.buffer.turn_audio()) / SAMPLE_RATE
            if held + len(samples) / SAMPLE_RATE > MAX_TURN_SECONDS:
                raise ProtocolError(f"the input audio buffer holds {held:.0f} s; commit it before appending more "
                                    f"(at most {MAX_TURN_SECONDS:g} s a turn)", "audio", "buffer_full", event.event_id)
        self._take_audio(samples, vad_events)

    def _detect_turns(self, options: TurnDetection | None) -> None:
        """Server VAD on, off or with new settings. One already on keeps its place in the stream (and the
        turn it has open); a new one starts at the stream's next sample, so its events keep stream time."""
        if options is None:
            self.turns = None
        elif self.turns is not None:
            self.turns.options = options
        else:
            self.turns = LiveTurns(options, start=self.buffer.received)

    def _take_flushed(self) -> None:
        """The input decoder's held samples into the stream, through the turn detector like any audio."""
        samples = self.input.flush()
        self._take_audio(samples, self.turns.feed(samples) if self.turns is not None and len(samples) else [])

    def _ingest(self, data: bytes) -> tuple[np.ndarray, list]:
        """In a worker thread: bytes → 16 kHz samples → VAD events."""
        samples = self.input.decode(data)
        return samples, (self.turns.feed(samples) if self.turns is not None else [])

    def _take_audio(self, samples: np.ndarray, vad_events: list) -> None:
        """Append samples to the buffer, opening and closing turns where the VAD said."""
        decoder = self.decoder
        base = self.buffer.received
        done = 0
        for vad in vad_events:
            upto = max(done, min(len(samples), vad.sample - base))
            self.buffer.append(samples[done:upto])
            done = upto
            if vad.kind == "speech_started" and decoder.turn is None:
                start = self.buffer.start_turn(vad.sample)
                item_id = self._open_turn()
                self.send(server_event("input_audio_buffer.speech_started", audio_start_ms=_ms(start),
                                       item_id=item_id))
            elif vad.kind == "speech_paused":
                decoder.paused(vad.sample)
            elif vad.kind == "speech_resumed":
                decoder.resumed()
            elif vad.kind == "speech_stopped" and decoder.turn is not None:
                self.send(server_event("input_audio_buffer.speech_stopped", audio_end_ms=_ms(vad.sample),
                                       item_id=decoder.turn.item_id))
                self._close_turn(vad.sample)
        rest = samples[done:]
        if len(rest) and self.turns is None and decoder.turn is None:
            self.buffer.start_turn(self.buffer.received)
            self._open_turn()
        self.buffer.append(rest)
        if decoder.turn is not None and len(self.buffer.turn_audio()) > MAX_TURN_SECONDS * SAMPLE_RATE:
            self._close_turn(self.buffer.received)
        if self.turns is not None:
            self.turns.scores.forget_before(self.buffer.held_from)
        decoder.audio_added()

    def _commit(self, event: BufferEvent) -> None:
        self._take_flushed()
        if self.decoder.turn is None or not len(self.buffer.turn_audio()):
            raise ProtocolError("the input audio buffer is empty: append audio before committing", None,
                                "input_audio_buffer_commit_empty", event.event_id)
        self._close_turn(self.buffer.received)
        if self.turns is not None:
            self.turns.in_speech = False

    def _clear(self) -> None:
        self.decoder.clear()
        self.buffer.clear()
        if self.turns is not None:
            self.turns.in_speech = False
        self.send(server_event("input_audio_buffer.cleared"))

    # -- turns -----------------------------------------------------------------------------------

    def _open_turn(self) -> str:
        item_id = new_id("item")
        self.decoder.open_turn(item_id, self.policy)
        return item_id

    def _close_turn(self, end: int, flush: bool = False) -> None:
        """Commit the open turn up to `end`: `committed` now, its final decode queued."""
        if flush:
            self._take_flushed()
            end = self.buffer.received
        item_id = self.decoder.close_turn(end)
        if item_id is None:
            return
        self.send(server_event("input_audio_buffer.committed", item_id=item_id,
                               previous_item_id=self.previous_item_id))
        self.previous_item_id = item_id

    def _speech_scores(self, start: int, num_samples: int) -> np.ndarray | None:
        """The server VAD's scores of a window of the stream (None without server VAD)."""
        return self.turns.scores.window(start, num_samples) if self.turns is not None else None

    def _session(self) -> dict:
        return {"id": self.id, **self.config.describe(self.decoder.recognizer.model_name)}
