"""The decodes of one realtime session's turns: the open turn again and again (deltas), each closed
turn's final decode (the last delta, `.completed`), and the final decode started early when the
speaker pauses.

`TurnDecoder` is owned by `RealtimeSession` (session.py), which takes the client's events and audio and
tells the decoder what happened: a turn opened, audio came, the speaker paused or went on, a turn
closed or was cleared, the session's settings changed. The decoder reads the open turn's audio from
the `TurnBuffer` it is given, and hands every server event it makes to `emit`.

Each decode goes to the model with the speech scores the session's live VAD gave the window's frames
(`scores`), so the recognizer does not run its VAD again on audio the live VAD has already scored
(without server VAD there are none: a turn the client commits is planned like a file).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from ...asr.live.final import EarlyFinal, FinalPolicy, keep_speech
from ...asr.live.streaming import Hypothesis, StreamingPolicy, TurnBuffer, TurnStream, remaining_words, split_words
from ...constants import SAMPLE_RATE
from ...pipeline import Transcriber
from ...transcript import Transcript
from .config import SessionConfig, transcribe_options
from .protocol import completed_event, delta_event, server_event
from .registry import SessionRegistry

log = logging.getLogger(__name__)

SpeechScoresOf = Callable[[int, int], np.ndarray | None]
"""(stream sample, samples) -> the live VAD's speech score of each frame of that window, or None."""
FINAL_ATTEMPTS = 2
"""Decodes a turn's final transcript may take (the one started at a pause counts) before `.failed`."""


@dataclass
class OpenTurn:
    """The turn being spoken: its item id and its live decoding state."""

    item_id: str
    stream: TurnStream


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
    scores: np.ndarray | None = None
    """The live VAD's speech score of each frame of `audio` (None: the recognizer's VAD scores it)."""


@dataclass(frozen=True)
class Recognizer:
    """What a session's turns are decoded with: its settings, the model copy, and the model's name."""

    config: SessionConfig
    transcriber: Transcriber
    model_name: str


class TurnDecoder:
    """Partial, final and early final decodes of one session's turns, run as two tasks (`start()`):
    the open turn's decodes, and the closed turns' final decodes in order."""

    def __init__(self, session_id: str, registry: SessionRegistry, buffer: TurnBuffer, recognizer: Recognizer,
                 emit: Callable[[dict], None], final_policy: FinalPolicy | None = None,
                 scores: SpeechScoresOf | None = None) -> None:
        self.session_id = session_id
        self.registry = registry
        self.buffer = buffer
        self.scores: SpeechScoresOf = scores or _unscored
        self.recognizer = recognizer
        self.emit = emit
        self.final_policy = final_policy or FinalPolicy()
        self.turn: OpenTurn | None = None
        self.early: EarlyFinal | None = None
        self.finals: asyncio.Queue[ClosedTurn | None] = asyncio.Queue()
        self.pending: list[ClosedTurn] = []
        """Closed turns whose final decode is owed (each counted in the registry's `final_waiting`)."""
        self.wake = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self._tasks: list[asyncio.Task] = []

    # -- what the session tells the decoder ----------------------------------------------------

    def start(self) -> None:
        """Start the open turn's decodes and the final decodes."""
        self._tasks = [asyncio.create_task(self._partials()), asyncio.create_task(self._finals())]

    def open_turn(self, item_id: str, policy: StreamingPolicy) -> None:
        """A turn opened (its audio starts at the buffer's turn start)."""
        self.turn = OpenTurn(item_id, TurnStream(policy, self.recognizer.config.prompt))

    def audio_added(self) -> None:
        """Audio came: report the lag and look whether the open turn is due for a decode."""
        self.track_lag()
        self.wake.set()

    def paused(self, end: int) -> None:
        """The speaker paused: start the open turn's final decode now, on its audio up to `end`. If the
        turn stops without more speech, this is its final decode; either way, once it is done its words
        are confirmed (a delta) and the open turn's window starts at the pause."""
        if self.turn is None:
            return
        self.resumed()
        audio = self.buffer.turn_audio(end).copy()
        scores = self.scores(self.buffer.turn_start or 0, len(audio))
        future = self._decode(self.recognizer.transcriber, audio, self._final_options(self.recognizer.config), scores)
        self.early = EarlyFinal(self.turn.item_id, end, future)
        future.add_done_callback(lambda done, early=self.early, turn=self.turn: self._settle(early, turn, done))
        log.debug("realtime early final: session_id=%s turn_s=%.2f", self.session_id, len(audio) / SAMPLE_RATE)

    def resumed(self, outcome: str = "resumed") -> None:
        """Speech went on after a pause (or the turn was cleared: `outcome` "cleared"): the early final
        decode no longer stands for the turn's final decode (its words still settle the open turn)."""
        if self.early is not None:
            log.debug("realtime early final detached: session_id=%s", self.session_id)
            self.registry.early_outcome(outcome)
            self.early.result.add_done_callback(_retrieve)
            self.early = None

    def close_turn(self, end: int) -> str | None:
        """Commit the open turn up to buffer position `end` and queue its final decode; returns its item
        id (None when no turn was open)."""
        if self.turn is None:
            return None
        turn, self.turn = self.turn, None
        start, audio = self.buffer.take_turn(end)
        early = self.early.result if self.early is not None and self.early.covers(turn.item_id) else None
        if early is not None:
            self.registry.early_outcome("final")
            self.early = None
        self.resumed()
        recognizer = self.recognizer
        closed = ClosedTurn(turn.item_id, start, audio, list(turn.stream.confirmed), recognizer.config,
                            recognizer.transcriber, time.monotonic(), early, self.scores(start, len(audio)))
        self.pending.append(closed)
        self.registry.final_waiting(+1, closed.transcriber)
        self.finals.put_nowait(closed)
        return turn.item_id

    def clear(self) -> None:
        """The client dropped the open turn."""
        self.resumed("cleared")
        self.turn = None

    def track_lag(self) -> None:
        """Report the session's lag: the open turn's audio no decode has seen, or the oldest closed
        turn's wait for its final decode."""
        lag = self.turn.stream.lag_s(len(self.buffer.turn_audio())) if self.turn is not None else 0.0
        if self.pending:
            lag = max(lag, time.monotonic() - self.pending[0].closed_at)
        self.registry.set_lag(self.session_id, lag)

    async def finish(self) -> None:
        """Run the final decodes of every closed turn (their `.completed` emitted), then stop."""
        await self.finals.put(None)
        with contextlib.suppress(Exception):
            await self._tasks[1]
        self.abandon()

    def abandon(self) -> None:
        """Stop at once: no more decodes; turns still owed a final decode are dropped."""
        for task in self._tasks:
            task.cancel()
        self.resumed("cleared")
        for turn in self.pending:
            self.registry.final_waiting(-1, turn.transcriber)
            if turn.early is not None:
                turn.early.add_done_callback(_retrieve)
        self.pending.clear()
        self.turn = None

    # -- decoding --------------------------------------------------------------------------------

    def _final_options(self, config: SessionConfig) -> object:
        return transcribe_options(config, partial=False, policy=self.final_policy)

    def _transcribe(self, transcriber: Transcriber, audio: np.ndarray, options: object,
                    scores: np.ndarray | None) -> asyncio.Future:
        """A decode of `audio` on the registry's threads, with the live VAD's `scores` of its frames."""
        return self.loop.run_in_executor(self.registry.executor, partial(transcriber.transcribe, audio, options,
                                                                         speech_scores=scores))

    def _decode(self, transcriber: Transcriber, audio: np.ndarray, options: object,
                scores: np.ndarray | None) -> asyncio.Future:
        """A final decode, counted as owed on `transcriber` while it runs (partial decodes on that model
        copy wait for it)."""
        self.registry.final_waiting(+1, transcriber)
        future = self._transcribe(transcriber, audio, options, scores)
        future.add_done_callback(lambda _: self.registry.final_waiting(-1, transcriber))
        return future

    def _settle(self, early: EarlyFinal, turn: OpenTurn | None, done: asyncio.Future) -> None:
        """An early final decode is done: if its turn is still open, send the words it adds to the deltas."""
        if done.cancelled() or done.exception() is not None or turn is None or self.turn is not turn:
            return
        words = split_words(keep_speech(done.result(), self.final_policy).text)
        start = self.buffer.turn_start or 0
        new = turn.stream.settle(words, early.end - start)
        log.debug("realtime early final settled: session_id=%s at_s=%.2f new=%d", self.session_id,
                  (early.end - start) / SAMPLE_RATE, len(new))
        if new:
            self.emit(delta_event(early.item_id, "".join(new)))

    async def _partials(self) -> None:
        """Decode the open turn whenever the policy says it is due; send the newly confirmed words."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            turn, recognizer = self.turn, self.recognizer
            if turn is None:
                continue
            if self.registry.finals_pending_on(recognizer.transcriber):  # finals first: retried at the next append
                continue
            if self.early is not None:  # a pause: nothing new to confirm until speech resumes
                continue
            stream = turn.stream
            available = len(self.buffer.turn_audio())
            if not stream.due(available):
                continue
            window = stream.window(available)
            audio = self.buffer.turn_audio()[window[0] : window[1]].copy()
            scores = self.scores((self.buffer.turn_start or 0) + window[0], len(audio))
            options = transcribe_options(recognizer.config, partial=True, prompt=stream.prompt(),
                                         margin_s=stream.policy.encoder_margin_s)
            started = time.perf_counter()
            try:
                transcript = await self._transcribe(recognizer.transcriber, audio, options, scores)
            except Exception:  # noqa: BLE001 - a failed partial costs one step; the final decode reports
                log.exception("realtime session %s: partial decode failed", self.session_id)
                continue
            if self.turn is not turn:
                continue  # the turn closed (or was cleared) meanwhile
            hypothesis = Hypothesis.from_segments([(s.text, s.end) for s in transcript.segments])
            seconds = time.perf_counter() - started
            words = stream.accept(hypothesis, window, seconds)
            log.debug("realtime partial: session_id=%s window_s=%.2f decode_s=%.3f step_s=%.2f lag_s=%.2f new=%d "
                      "hyp=%d confirmed=%d", self.session_id, (window[1] - window[0]) / SAMPLE_RATE, seconds,
                      stream.step_s, stream.lag_s(len(self.buffer.turn_audio())), len(words),
                      len(hypothesis.words), len(stream.confirmed))
            if words:
                self.emit(delta_event(turn.item_id, "".join(words)))
            self.track_lag()
            self.wake.set()  # audio that came during the decode may already make the next one due

    async def _finals(self) -> None:
        """Final decode of each closed turn, in order: the last delta, then `.completed` (or `.failed`)."""
        while (turn := await self.finals.get()) is not None:
            started = time.monotonic()
            try:
                transcript = keep_speech(await self._final_transcript(turn), self.final_policy)
            except Exception as exc:  # noqa: BLE001 - reported to the client as the turn's failure
                log.exception("realtime session %s: final decode failed", self.session_id)
                self.emit(server_event("conversation.item.input_audio_transcription.failed", item_id=turn.item_id,
                                       content_index=0, error={"type": "server_error", "code": "transcription_failed",
                                                               "message": str(exc), "param": None}))
            else:
                rest = self._complete(turn, transcript)
                log.debug("realtime final: session_id=%s turn_s=%.2f queued_s=%.3f decode_s=%.3f words=%d "
                          "confirmed=%d rest=%d early=%s", self.session_id, len(turn.audio) / SAMPLE_RATE,
                          started - turn.closed_at, time.monotonic() - started, len(split_words(transcript.text)),
                          len(turn.confirmed), rest, turn.early is not None)
            self.pending.remove(turn)
            self.registry.turn_done(self.session_id, len(turn.audio) / SAMPLE_RATE, turn.transcriber)
            self.track_lag()

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
                            self.session_id, turn.item_id, exc_info=True)
        options = self._final_options(turn.config)
        for _ in range(attempts - 1):
            try:
                return await self._decode_turn(turn, options)
            except Exception:  # noqa: BLE001 - tried again
                log.warning("realtime session %s: final decode of %s failed; trying again", self.session_id,
                            turn.item_id, exc_info=True)
        return await self._decode_turn(turn, options)

    async def _decode_turn(self, turn: ClosedTurn, options: object) -> Transcript:
        return await self._transcribe(turn.transcriber, turn.audio, options, turn.scores)

    def _complete(self, turn: ClosedTurn, transcript: Transcript) -> int:
        """Send the last delta and `.completed`; returns how many words the last delta added."""
        rest = remaining_words(turn.confirmed, split_words(transcript.text))
        if rest:
            text = "".join(rest)
            self.emit(delta_event(turn.item_id, text.lstrip() if not turn.confirmed else text))
        self.emit(completed_event(turn.item_id, transcript, turn.start / SAMPLE_RATE, len(turn.audio) / SAMPLE_RATE,
                                  self.recognizer.model_name))
        return len(rest)


def _unscored(start: int, num_samples: int) -> None:
    """No live VAD: the recognizer scores the audio itself."""
    return None


def _retrieve(future: asyncio.Future) -> None:
    """Take a dropped decode's outcome, so that its error (if any) is not reported as never retrieved."""
    if not future.cancelled():
        future.exception()
