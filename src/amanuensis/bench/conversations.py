"""Conversations built from real clips of the dev set (../shared/data/speech), the truth known from construction.

Used by `bench diarize` and the diarization tests: read speech of different recordings joined with pauses,
and faster-whisper's two-channel recording mixed to mono."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..audio import SAMPLE_RATE, decode_audio
from .load import default_data_dir

SPEECH = default_data_dir()

JFK = "whisper/jfk.flac"
JFK_SPLIT_S = 4.9  # inside the pause after "And so my fellow Americans, ask not"

# (speaker, clip, (start_s, end_s) or None for all of it): four real speakers of different corpora.
CONVERSATION: list[tuple[str, str, tuple[float, float] | None]] = [
    ("jfk", JFK, (0.0, JFK_SPLIT_S)),
    ("lj", "TTS/LJ001-0004.wav", None),
    ("libri2412", "lhotse/2412-153948-0000.flac", None),
    ("austen", "pocketsphinx/sense_and_sensibility_01_austen_64kb-0870.wav", None),
    ("lj", "TTS/LJ001-0006.wav", None),
    ("austen", "pocketsphinx/sense_and_sensibility_01_austen_64kb-0890.wav", None),
    ("jfk", JFK, (JFK_SPLIT_S, 11.0)),
    ("lj", "TTS/LJ001-0011.wav", None),
    ("austen", "pocketsphinx/sense_and_sensibility_01_austen_64kb-0920.wav", None),
]
PAUSES_S = (0.6, 0.4, 0.8, 0.5, 0.7, 0.5, 0.6, 0.4)


@dataclass
class Conversation:
    """Audio (16 kHz mono float32) and the reference turns as (start_s, end_s, speaker)."""

    samples: np.ndarray
    turns: list[tuple[float, float, str]]

    @property
    def speakers(self) -> set[str]:
        return {speaker for _, _, speaker in self.turns}


def load_clip(relative: str) -> np.ndarray:
    """A clip of the shared data as 16 kHz mono float32."""
    return decode_audio(str(SPEECH / relative))


def trim_silence(samples: np.ndarray, threshold_db: float = -40.0, frame: int = 160) -> np.ndarray:
    """Cut leading and trailing silence (10 ms frames below `threshold_db` relative to the peak frame)."""
    n = len(samples) // frame
    energy = np.sqrt(np.mean(samples[: n * frame].reshape(n, frame) ** 2, axis=1)) + 1e-10
    loud = np.flatnonzero(20 * np.log10(energy / energy.max()) > threshold_db)
    return samples[loud[0] * frame : (loud[-1] + 1) * frame]


def concatenate(pieces: list[tuple[str, np.ndarray]], pauses_s: tuple[float, ...]) -> Conversation:
    """Join (speaker, samples) pieces with the given pauses; the truth is each piece's span."""
    parts: list[np.ndarray] = []
    turns: list[tuple[float, float, str]] = []
    position = 0
    for index, (speaker, samples) in enumerate(pieces):
        if index:
            gap = np.zeros(int(pauses_s[(index - 1) % len(pauses_s)] * SAMPLE_RATE), dtype=np.float32)
            parts.append(gap)
            position += len(gap)
        turns.append((position / SAMPLE_RATE, (position + len(samples)) / SAMPLE_RATE, speaker))
        parts.append(samples.astype(np.float32))
        position += len(samples)
    return Conversation(np.concatenate(parts), turns)


def four_speaker_conversation(pauses_s: tuple[float, ...] = PAUSES_S) -> Conversation:
    """About 60 s: JFK, an LJSpeech reader, a LibriSpeech reader and a LibriVox reader taking turns."""
    pieces = []
    for speaker, clip, span in CONVERSATION:
        samples = load_clip(clip)
        if span:
            samples = samples[int(span[0] * SAMPLE_RATE) : int(span[1] * SAMPLE_RATE)]
        pieces.append((speaker, trim_silence(samples)))
    return concatenate(pieces, pauses_s)


def stereo_conversation() -> Conversation:
    """faster-whisper's stereo_diarization.wav mixed to mono; the truth comes from its two channels."""
    left = decode_audio(str(SPEECH / "faster-whisper" / "stereo_diarization_left.flac"))
    right = decode_audio(str(SPEECH / "faster-whisper" / "stereo_diarization_right.flac"))
    length = max(len(left), len(right))
    left, right = (np.pad(x, (0, length - len(x))) for x in (left, right))
    turns = [(*span, "left") for span in active_spans(left)] + [(*span, "right") for span in active_spans(right)]
    return Conversation(((left + right) / 2).astype(np.float32), sorted(turns))


def active_spans(
    samples: np.ndarray, threshold_db: float = -40.0, frame: int = 160, min_gap_s: float = 0.3
) -> list[tuple[float, float]]:
    """Spans (seconds) where a single-speaker channel is active, gaps under `min_gap_s` bridged."""
    n = len(samples) // frame
    energy = np.sqrt(np.mean(samples[: n * frame].reshape(n, frame) ** 2, axis=1)) + 1e-10
    loud = 20 * np.log10(energy / energy.max()) > threshold_db
    spans: list[list[float]] = []
    for index in np.flatnonzero(loud):
        start, end = index * frame / SAMPLE_RATE, (index + 1) * frame / SAMPLE_RATE
        if spans and start - spans[-1][1] < min_gap_s:
            spans[-1][1] = end
        else:
            spans.append([start, end])
    return [(a, b) for a, b in spans]
