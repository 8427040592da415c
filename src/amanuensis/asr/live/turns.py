"""Turns on a live stream: Silero carried from append to append, hysteresis, an energy gate, pauses.

A session feeds 16 kHz samples in; `LiveTurns` says where speech starts and stops, and where a pause
inside a turn begins and ends (the session starts the turn's final decode at a pause).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

from ...constants import SAMPLE_RATE
from ..vad import CONTEXT_SAMPLES, FRAME_SAMPLES, SileroVad, VadOptions, default_vad

LEVEL_FRAMES = 940
"""Speech frames (about 30 s) whose median RMS is the level of speech for the energy gate."""
MIN_LEVEL_FRAMES = 16
"""The gate opens once Silero has scored this many frames (about 0.5 s) as speech."""


@dataclass(frozen=True)
class TurnDetection:
    """Server VAD settings (OpenAI's names): speech probability threshold, audio kept before the
    speech start, and the silence that ends a turn."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    long_turn_s: float = 15.0
    """A turn this long ends at the next pause Silero hears of `long_turn_pause_ms` (its final decode,
    of the whole turn, would otherwise keep the speaker waiting)."""
    long_turn_pause_ms: int = 200
    early_final_ms: int | None = 200
    """After this much silence inside a turn the turn may be over: `speech_paused` lets the session start
    the turn's final decode before `silence_duration_ms` has passed (None: never)."""


@dataclass(frozen=True)
class VadEvent:
    """Speech started or stopped at `sample` (samples since the stream began). A start includes the
    prefix padding; a stop is where the turn's audio ends (after `silence_duration_ms` of silence).
    Inside a turn, `speech_paused` (after `early_final_ms` of silence) and `speech_resumed` (speech
    again before the turn stopped) mark a pause that may end the turn."""

    kind: str
    sample: int


class SpeechScores:
    """The speech score of every 512-sample frame of a stream (frame k covers samples 512k to 512k + 511),
    kept from a frame on: a decode of a window of the stream takes its scores from here instead of
    running the VAD over the window again."""

    def __init__(self, first: int = 0) -> None:
        self.first = first  # stream frame of self._scores[0]
        self._scores = np.zeros(0, dtype=np.float32)

    @property
    def frames(self) -> int:
        """Frames scored since the stream began."""
        return self.first + len(self._scores)

    def extend(self, scores: np.ndarray | list[float]) -> None:
        """Add the scores of the next frames."""
        self._scores = np.concatenate([self._scores, np.asarray(scores, dtype=np.float32)])

    def window(self, start: int, num_samples: int) -> np.ndarray | None:
        """One score per frame of the `num_samples` samples from stream sample `start` (frames aligned to
        the window, each taking the stream frame it starts in; frames not scored yet take the last
        score); None when the window starts before the kept scores or nothing is scored yet."""
        count = -(-num_samples // FRAME_SAMPLES)
        frames = (start + np.arange(count) * FRAME_SAMPLES) // FRAME_SAMPLES - self.first
        if not len(self._scores) or (count and frames[0] < 0):
            return None
        return self._scores[np.minimum(frames, len(self._scores) - 1)]

    def forget_before(self, sample: int) -> None:
        """Drop the scores of frames that end before stream sample `sample`."""
        drop = min(len(self._scores), max(0, sample // FRAME_SAMPLES - self.first))
        if drop:
            self._scores = self._scores[drop:]
            self.first += drop


class LiveVad:
    """Silero over audio that arrives in pieces: the recurrent state and the 64-sample context are
    carried from call to call, so the probabilities equal those of one pass over the whole stream."""

    def __init__(self, vad: SileroVad | None = None, start: int = 0) -> None:
        """`start`: the stream sample the first audio fed is; frames stay on the stream's 512-sample grid
        (the samples before the first whole frame are skipped)."""
        self.vad = vad or default_vad()
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self.frames = -(-start // FRAME_SAMPLES)
        self._skip = self.frames * FRAME_SAMPLES - start

    def reset(self) -> None:
        """Forget the recurrent state (Silero, carried over a long stream, can go deaf to a new voice)."""
        self._h = np.zeros_like(self._h)
        self._c = np.zeros_like(self._c)

    def feed(self, samples: np.ndarray) -> np.ndarray:
        """Speech probability of every 512-sample frame completed by `samples`."""
        return self.feed_with_rms(samples)[0]

    def feed_with_rms(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Speech probability and RMS of every 512-sample frame completed by `samples`."""
        samples = np.asarray(samples, dtype=np.float32)
        cut = min(self._skip, len(samples))
        samples, self._skip = samples[cut:], self._skip - cut
        audio = np.concatenate([self._pending, samples])
        count = len(audio) // FRAME_SAMPLES
        self._pending = audio[count * FRAME_SAMPLES :]
        if count == 0:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.float32)
        windows = audio[: count * FRAME_SAMPLES].reshape(count, FRAME_SAMPLES)
        contexts = np.concatenate([self._context[None, :], windows[:-1, -CONTEXT_SAMPLES:]], axis=0)
        batch = np.ascontiguousarray(np.concatenate([contexts, windows], axis=1))
        probs, self._h, self._c = self.vad.session.run(None, {"input": batch, "h": self._h, "c": self._c})
        self._context = windows[-1, -CONTEXT_SAMPLES:].copy()
        self.frames += count
        rms = np.sqrt(np.mean(np.square(windows), axis=1))
        return np.asarray(probs, dtype=np.float32).reshape(-1)[:count], rms.astype(np.float32)


class LiveTurns:
    """Turn detection on a live stream: hysteresis on Silero's probabilities (on at `threshold`, off
    below `threshold - 0.15`), a turn ending after `silence_duration_ms` below the off threshold.

    As in the offline VAD (asr/vad.py), frames as loud as speech also count as speech: Silero misses
    some voices (a cold, whispering), and over a long stream its state can go deaf to a new voice.
    The level of speech is the median RMS of the recent frames Silero scored as speech; the gate stays
    shut until it has heard some. Silero's state is reset after each turn."""

    def __init__(self, options: TurnDetection, vad: SileroVad | None = None,
                 gate: VadOptions | None = None, start: int = 0) -> None:
        """`start`: the stream sample the first audio fed is (turn detection switched on mid-stream)."""
        self.options = options
        self.gate = gate or VadOptions()
        self.live = LiveVad(vad, start)
        self.in_speech = False
        self._silent_frames = 0
        self._quiet_frames = 0  # frames in a row Silero alone calls silence
        self._turn_frames = 0
        self._speech_rms: collections.deque[float] = collections.deque(maxlen=LEVEL_FRAMES)
        self.scores = SpeechScores(first=self.live.frames)
        """Every frame's score (Silero's, raised by the energy gate), for the decodes of the stream's turns."""

    def _scores(self, probs: np.ndarray, rms: np.ndarray) -> list[float]:
        self._speech_rms.extend(rms[probs >= self.options.threshold].tolist())
        if self.gate.energy_gate_db is None or len(self._speech_rms) < MIN_LEVEL_FRAMES:
            return probs.tolist()
        level = float(np.median(np.fromiter(self._speech_rms, dtype=np.float32)))
        floor = max(self.gate.energy_floor, level * 10 ** (self.gate.energy_gate_db / 20))
        return np.maximum(probs, np.clip(rms / (2 * floor), 0.0, 1.0)).tolist()

    @property
    def off_threshold(self) -> float:
        """Probability below which a frame counts as silence."""
        return max(self.options.threshold - 0.15, 0.01)

    def feed(self, samples: np.ndarray) -> list[VadEvent]:
        """Score `samples`; return the speech starts and stops they complete, in order."""
        first = self.live.frames
        events: list[VadEvent] = []
        silence_frames = max(1, round(self.options.silence_duration_ms * SAMPLE_RATE / 1000 / FRAME_SAMPLES))
        padding = round(self.options.prefix_padding_ms * SAMPLE_RATE / 1000)
        long_turn = round(self.options.long_turn_s * SAMPLE_RATE / FRAME_SAMPLES)
        long_pause = max(1, round(self.options.long_turn_pause_ms * SAMPLE_RATE / 1000 / FRAME_SAMPLES))
        early = self.options.early_final_ms
        pause_frames = None if early is None else max(1, round(early * SAMPLE_RATE / 1000 / FRAME_SAMPLES))
        probs, rms = self.live.feed_with_rms(samples)
        scores = self._scores(probs, rms)
        self.scores.extend(scores)
        for offset, (p, raw) in enumerate(zip(scores, probs.tolist())):
            frame = first + offset
            if not self.in_speech:
                if p >= self.options.threshold:
                    self.in_speech, self._silent_frames, self._quiet_frames, self._turn_frames = True, 0, 0, 0
                    events.append(VadEvent("speech_started", max(0, frame * FRAME_SAMPLES - padding)))
                continue
            self._turn_frames += 1
            if p >= self.off_threshold and pause_frames is not None and self._silent_frames >= pause_frames:
                events.append(VadEvent("speech_resumed", frame * FRAME_SAMPLES))
            self._silent_frames = 0 if p >= self.off_threshold else self._silent_frames + 1
            self._quiet_frames = 0 if raw >= self.off_threshold else self._quiet_frames + 1
            paused = self._turn_frames >= long_turn and self._quiet_frames >= long_pause
            if self._silent_frames >= silence_frames or paused:
                self.in_speech = False
                self.live.reset()
                events.append(VadEvent("speech_stopped", (frame + 1) * FRAME_SAMPLES))
            elif self._silent_frames == pause_frames:
                events.append(VadEvent("speech_paused", (frame + 1) * FRAME_SAMPLES))
        return events
