"""Word times moved onto the speech: the alignment's lag taken out, then cut to Silero's speech frames.

Whisper's word times come from cross-attention alignment (CTranslate2 `align`, 20 ms a step). Two
errors dominate. Every time lags the speech: the attention peaks after the sound it reads, so starts
and ends are late alike (faster-whisper's word times carry the same lag). And a word next to a pause
is stretched over it (the first word of a segment starting in the silence before it, a word before a
pause ending in the silence after it), because the alignment has no token for silence. The lag is
removed as a constant, then the word is cut to the speech Silero scored in its span (speech_time.
trim_word). Silero's own scores are used, not the energy-gated ones: the gate calls any sound as loud
as speech speech (a click, a breath, a cough in the pause), which is what a word must not be moved onto.
Cost: a few array slices per word.
"""

from __future__ import annotations

import numpy as np

from .speech_time import trim_word

ALIGNMENT_LAG_S = 0.08
"""How late cross-attention alignment times run behind the speech (4 alignment steps), subtracted
from every word's start and end before the word is cut to the speech."""


def place_word(silero: np.ndarray, start: float, end: float) -> tuple[float, float]:
    """A word's (start, end) in original time from its aligned span: lag removed, cut to speech."""
    return trim_word(silero, max(0.0, start - ALIGNMENT_LAG_S), max(0.0, end - ALIGNMENT_LAG_S))
