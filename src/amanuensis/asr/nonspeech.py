"""Text the decoder doubted, over audio the VAD heard no speech in, is made up: it is dropped.

Whisper drops a window only when two of its own signals agree: a high no-speech probability and a
low average log-probability of the text. On music, room noise or a quiet stretch of a meeting the
model often writes a fluent phrase ("Thank you.") that passes the log-probability test while its
no-speech probability is high, or a phrase it rated unlikely under a low no-speech probability.
Silero's frame scores are a second detector, independent of the decoder: a segment is made up when
the decoder doubted its window (either signal past its threshold) and Silero scored no frame of the
segment's span as speech. A segment with no letter or digit in it (" . . .") holds no word at all
and is dropped too. Segments the decoder was sure of are kept whatever Silero says (Silero misses
some whispered and far-field speech), and so is every segment over speech Silero heard.
"""

from __future__ import annotations

import numpy as np

from ..constants import SAMPLE_RATE
from ..transcript import Segment
from .decoding import DecodeSettings
from .vad import FRAME_SAMPLES

HEARD = 0.35
"""A frame Silero scores at least this much may be speech (the VAD's off threshold)."""


def heard_speech(silero: np.ndarray, start: float, end: float) -> bool:
    """True when Silero scored a frame between `start` and `end` (seconds) as possible speech."""
    first = max(0, int(start * SAMPLE_RATE) // FRAME_SAMPLES)
    last = min(len(silero), -(-int(end * SAMPLE_RATE) // FRAME_SAMPLES))
    last = max(last, min(len(silero), first + 1))
    return bool(np.any(np.asarray(silero[first:last]) >= HEARD))


def decoder_doubted(segment: Segment, settings: DecodeSettings) -> bool:
    """True when the decoder's window had a no-speech probability above the threshold or a text
    log-probability below it (either half of Whisper's silence rule)."""
    no_speech = settings.no_speech_threshold is not None and segment.no_speech_prob > settings.no_speech_threshold
    unlikely = settings.log_prob_threshold is not None and segment.avg_logprob < settings.log_prob_threshold
    return no_speech or unlikely


def made_up(segment: Segment, silero: np.ndarray | None, settings: DecodeSettings) -> bool:
    """True for a segment (original time) without a letter or digit (" . . ." holds no word), or one
    the decoder doubted and Silero heard no speech in."""
    if not any(character.isalnum() for character in segment.text):
        return True
    if silero is None or len(silero) == 0:
        return False
    return decoder_doubted(segment, settings) and not heard_speech(silero, segment.start, segment.end)
