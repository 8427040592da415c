"""Language of each stretch of speech, for audio that changes language (multilingual mode).

Speech regions from the VAD are merged into pieces of up to 30 s (cut at pauses); the model
identifies each piece's language; consecutive pieces of one language form a run, and each run is
then transcribed with its language fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..constants import SAMPLE_RATE

PIECE_MAX_S = 30.0
MIN_PIECE_S = 2.0


@dataclass
class LanguageRun:
    """A stretch [start, end) in samples spoken in one language."""

    start: int
    end: int
    language: str
    probability: float


def speech_pieces(samples: np.ndarray) -> list[tuple[int, int]]:
    """VAD speech regions merged into pieces of at most PIECE_MAX_S, as (start, end) sample indices."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    regions = get_speech_timestamps(samples, VadOptions(min_silence_duration_ms=500, max_speech_duration_s=PIECE_MAX_S))
    limit = int(PIECE_MAX_S * SAMPLE_RATE)
    pieces: list[tuple[int, int]] = []
    for region in regions:
        start, end = region["start"], region["end"]
        if pieces and end - pieces[-1][0] <= limit:
            pieces[-1] = (pieces[-1][0], end)
        else:
            pieces.append((start, end))
    return pieces or [(0, len(samples))]


def language_runs(whisper, samples: np.ndarray) -> list[LanguageRun]:
    """Detect the language of every speech piece and merge neighbours of one language into runs.

    `whisper` is a faster_whisper.WhisperModel (its detect_language uses our front end). The runs
    cover the whole input: boundaries fall in the pauses between pieces.
    """
    runs: list[LanguageRun] = []
    pieces = speech_pieces(samples)
    for index, (start, end) in enumerate(pieces):
        piece = samples[start:end]
        if len(piece) < MIN_PIECE_S * SAMPLE_RATE and runs:
            runs[-1].end = end
            continue
        language, probability, _ = whisper.detect_language(piece)
        if runs and runs[-1].language == language:
            runs[-1].end = end
            runs[-1].probability = max(runs[-1].probability, probability)
        else:
            boundary = start if not runs else (runs[-1].end + start) // 2
            if runs:
                runs[-1].end = boundary
            runs.append(LanguageRun(boundary if runs else 0, end, language, float(probability)))
        if index == len(pieces) - 1:
            runs[-1].end = len(samples)
    runs[0].start, runs[-1].end = 0, len(samples)
    return runs
