"""Language of each stretch of speech, for audio that changes language (multilingual mode).

The speech regions the VAD found are merged into pieces of up to 30 s (cut at pauses); the model
identifies each piece's language; consecutive pieces of one language form a run, which the lanes
then decode with that language fixed. A piece too short to identify joins the run before it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..constants import SAMPLE_RATE

PIECE_MAX_S = 30.0
MIN_PIECE_S = 2.0

DetectLanguage = Callable[[np.ndarray], tuple[str, float]]
"""audio -> (language code, probability), e.g. `WhisperEngine.language_of`."""


@dataclass
class LanguageRun:
    """Consecutive speech regions (sample indices) spoken in one language."""

    language: str
    probability: float
    regions: list[tuple[int, int]] = field(default_factory=list)


def speech_pieces(regions: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """Consecutive regions grouped into pieces that span at most PIECE_MAX_S each."""
    limit = int(PIECE_MAX_S * SAMPLE_RATE)
    pieces: list[list[tuple[int, int]]] = []
    for region in regions:
        if pieces and region[1] - pieces[-1][0][0] <= limit:
            pieces[-1].append(region)
        else:
            pieces.append([region])
    return pieces


def language_runs(samples: np.ndarray, regions: list[tuple[int, int]], detect: DetectLanguage) -> list[LanguageRun]:
    """The regions in runs of one language, in order (empty when there is no speech)."""
    runs: list[LanguageRun] = []
    for piece in speech_pieces(regions):
        start, end = piece[0][0], piece[-1][1]
        if runs and end - start < MIN_PIECE_S * SAMPLE_RATE:
            runs[-1].regions.extend(piece)
            continue
        language, probability = detect(samples[start:end])
        if runs and runs[-1].language == language:
            runs[-1].regions.extend(piece)
            runs[-1].probability = max(runs[-1].probability, probability)
        else:
            runs.append(LanguageRun(language, probability, list(piece)))
    return runs
