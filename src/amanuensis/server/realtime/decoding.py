"""A realtime session's decodes: the open turn again and again (deltas), each closed turn's final
decode (the last delta, `.completed`), and the final decode started early when the speaker pauses.

`TurnDecoding` is the decoding half of `RealtimeSession` (session.py): it works on the session's
buffer, open turn (`stream`, `item_id`), config, transcriber, event queue and `RealtimeSessions`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import numpy as np

from ...asr.streaming import Hypothesis, TurnStream, remaining_words, split_words
from ...asr.turn_final import EarlyFinal, keep_speech
from ...constants import SAMPLE_RATE
from ...pipeline import Transcriber
from ...transcript import Transcript
from .config import SessionConfig, transcribe_options
from .protocol import completed_event, delta_event, server_event

log = logging.getLogger(__name__)

FINAL_ATTEMPTS = 2
"""Decodes a turn's final transcript may take (the one started at a pause counts) before `.failed`."""


@dataclass
class ClosedTurn:
    """A committed turn waiting for its final decode."""

    item_id: str
    start: int
    audio: np.ndarray
    confirmed: list[str]
    config: SessionConfig
    transcriber: Transcriber
    closed_at: float
    early: asyncio.Future | None = None
    """The final decode started at the pause that ended the turn, if one did."""


class TurnDecoding:
    """Partial, final and early final decodes of a session's turns (mixed into RealtimeSession)."""

    def _start_early_final(self, end: int) -> None:
        """The speaker paused: start the open turn's final decode now, on its audio up to `end`. If the
        turn stops without more speech, this is its final decode; either way, once it is done its words
        are confirmed (a delta) and the open turn's window starts at the pause."""
        self._detach_early_final()
        audio = self.buffer.turn_audio(end).copy()
        options = transcribe_options(self.config, partial=False, policy=self.final_policy)
        transcriber = self.transcriber
        self.sessions.final_waiting(+1, transcriber)
        future = self.loop.run_in_executor(self.sessions.executor, transcriber.transcribe, audio, options)
        future.add_done_callback(lambda _: self.sessions.final_waiting(-1, transcriber))
        self.early = EarlyFinal(self.item_id or "", end, future)
        future.add_done_callback(lambda done, early=self.early, stream=self.stream: self._settle(early, stream, done))
        log.debug("realtime early final: session_id=%s turn_s=%.2f", self.id, len(audio) / SAMPLE_RATE)

    def _settle(self, early: EarlyFinal, stream: TurnStream | None, done: asyncio.Future) -> None:
        """An early final decode is done: if its turn is still open, send the words it adds to the deltas."""
        if done.cancelled() or done.exception() is not None or stream is None or self.stream is not stream:
            return
        words = split_words(keep_speech(done.result(), self.final_policy).text)
        start = self.buffer.turn_start or 0
        new = stream.settle(words, early.end - start)
        log.debug("realtime early final settled: session_id=%s at_s=%.2f new=%d", self.id,
                  (early.end - start) / SAMPLE_RATE, len(new))
        if new:
            self._emit(delta_event(early.item_id, "".join(new)))

    def _detach_early_final(self, resumed: bool = True) -> None:
        """Speech went on after a pause (or the turn was cleared): the early final decode no longer stands
        for the turn's final decode (its words still settle the open turn, see `_settle`)."""
        if self.early is not None:
            log.debug("realtime early final detached: session_id=%s", self.id)
            self.sessions.early_outcome("resumed" if resumed else "cleared")
            self.early.result.add_done_callback(_retrieve)
            self.early = None

    async def _transcriber(self, name: str | None) -> tuple[Transcriber, str]:
        info = await asyncio.to_thread(self.pool.resolve, name)
        transcriber = await asyncio.to_thread(self.pool.hold, self.id, info, self.slot)
        return transcriber, info.name

    async def _partials(self) -> None:
        """Decode the open turn whenever the policy says it is due; send the newly confirmed words."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            stream, item_id = self.stream, self.item_id
            if stream is None:
                continue
            if self.sessions.finals_pending_on(self.transcriber):  # finals first: retried at the next append
                continue
            if self.early is not None:  # a pause: nothing new to confirm until speech resumes
                continue
            available = len(self.buffer.turn_audio())
            if not stream.due(available):
                continue
            window = stream.window(available)
            audio = self.buffer.turn_audio()[window[0] : window[1]].copy()
            options = transcribe_options(self.config, partial=True, prompt=stream.prompt(),
                                         margin_s=stream.policy.encoder_margin_s)
            started = time.perf_counter()
            try:
                transcript = await self.loop.run_in_executor(
                    self.sessions.executor, self.transcriber.transcribe, audio, options)
            except Exception:  # noqa: BLE001 - a failed partial costs one step; the final decode reports
                log.exception("realtime session %s: partial decode failed", self.id)
                continue
            if self.stream is not stream:
                continue  # the turn closed (or was cleared) meanwhile
            hypothesis = Hypothesis.from_segments([(s.text, s.end) for s in transcript.segments])
            seconds = time.perf_counter() - started
            words = stream.accept(hypothesis, window, seconds)
            log.debug("realtime partial: session_id=%s window_s=%.2f decode_s=%.3f step_s=%.2f lag_s=%.2f new=%d "
                      "hyp=%d confirmed=%d", self.id, (window[1] - window[0]) / SAMPLE_RATE, seconds, stream.step_s,
                      stream.lag_s(len(self.buffer.turn_audio())), len(words), len(hypothesis.words),
                      len(stream.confirmed))
            if words:
                self._emit(delta_event(item_id, "".join(words)))
            self._track_lag()
            self.wake.set()  # audio that came during the decode may already make the next one due

    async def _finals(self) -> None:
        """Final decode of each closed turn, in order: the last delta, then `.completed` (or `.failed`)."""
        while (turn := await self.finals.get()) is not None:
            started = time.monotonic()
            try:
                transcript = keep_speech(await self._final_transcript(turn), self.final_policy)
            except Exception as exc:  # noqa: BLE001 - reported to the client as the turn's failure
                log.exception("realtime session %s: final decode failed", self.id)
                self._emit(server_event("conversation.item.input_audio_transcription.failed", item_id=turn.item_id,
                                        content_index=0, error={"type": "server_error", "code": "transcription_failed",
                                                                "message": str(exc), "param": None}))
            else:
                rest = self._complete(turn, transcript)
                log.debug("realtime final: session_id=%s turn_s=%.2f queued_s=%.3f decode_s=%.3f words=%d "
                          "confirmed=%d rest=%d early=%s", self.id, len(turn.audio) / SAMPLE_RATE,
                          started - turn.closed_at, time.monotonic() - started, len(split_words(transcript.text)),
                          len(turn.confirmed), rest, turn.early is not None)
            self.pending_finals.remove(turn)
            self.sessions.turn_done(self.id, len(turn.audio) / SAMPLE_RATE, turn.transcriber)
            self._track_lag()

    async def _final_transcript(self, turn: ClosedTurn) -> Transcript:
        """The turn's final decode: the one started at the pause, if any; a decode that fails (that one,
        or a decode of the turn's audio now) is tried again once before the turn is reported failed."""
        attempts = FINAL_ATTEMPTS
        if turn.early is not None:
            attempts -= 1
            try:
                return await turn.early
            except Exception:  # noqa: BLE001 - retried below on the turn's own audio
                log.warning("realtime session %s: early final decode of %s failed; decoding the turn again",
                            self.id, turn.item_id, exc_info=True)
        options = transcribe_options(turn.config, partial=False, policy=self.final_policy)
        for _ in range(attempts - 1):
            try:
                return await self._decode_turn(turn, options)
            except Exception:  # noqa: BLE001 - tried again
                log.warning("realtime session %s: final decode of %s failed; trying again", self.id,
                            turn.item_id, exc_info=True)
        return await self._decode_turn(turn, options)

    async def _decode_turn(self, turn: ClosedTurn, options: object) -> Transcript:
        return await self.loop.run_in_executor(self.sessions.executor, turn.transcriber.transcribe, turn.audio,
                                               options)

    def _complete(self, turn: ClosedTurn, transcript: Transcript) -> int:
        """Send the last delta and `.completed`; returns how many words the last delta added."""
        rest = remaining_words(turn.confirmed, split_words(transcript.text))
        if rest:
            text = "".join(rest)
            self._emit(delta_event(turn.item_id, text.lstrip() if not turn.confirmed else text))
        self._emit(completed_event(turn.item_id, transcript, turn.start / SAMPLE_RATE, len(turn.audio) / SAMPLE_RATE,
                                   self.model_name))
        return len(rest)


def _retrieve(future: asyncio.Future) -> None:
    """Take a dropped decode's outcome, so that its error (if any) is not reported as never retrieved."""
    if not future.cancelled():
        future.exception()
