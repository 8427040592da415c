"""Known voices: a speaker whose reference clip sounds like one of the diarized speakers gets its name.

Each reference clip (a data URL, as OpenAI's known_speaker_references[]) and each diarized speaker's
speech are embedded with the same encoder; names go to speakers one to one, best match first, where
the two embeddings' cosine similarity reaches NAME_THRESHOLD. Other speakers keep SPEAKER_NN.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
from dataclasses import dataclass

import numpy as np

from ..audio import decode_audio
from ..constants import HOP_LENGTH as HOP
from ..constants import SAMPLE_RATE
from ..errors import AmanuensisError, OptionsError
from .encoder import SpeakerEncoder
from .turns import SpeakerTurn

log = logging.getLogger(__name__)

NAME_THRESHOLD = 0.45
"""Lowest similarity at which a reference names a speaker (with CAM++ one voice's read-speech clips
measure 0.5-0.97, two voices' at most about 0.25)."""
MIN_CLIP_S = 0.5
MAX_SPEECH_S = 60.0
"""At most this much of a diarized speaker's speech is embedded to compare with the references."""
OPTION = "known_speakers"


@dataclass(frozen=True)
class KnownVoice:
    """A name and the unit-length embedding of its reference clip."""

    name: str
    embedding: np.ndarray


def clip_samples(name: str, data_url: str) -> np.ndarray:
    """The audio of a reference data URL as 16 kHz mono float32; OptionsError when it is not audio."""
    try:
        payload = base64.b64decode(data_url.partition(",")[2], validate=True)
        samples = decode_audio(payload)
    except (binascii.Error, ValueError, AmanuensisError) as exc:
        raise OptionsError(f"{OPTION}: the reference clip of {name!r} is not readable audio ({exc})", OPTION) from None
    if len(samples) < MIN_CLIP_S * SAMPLE_RATE:
        raise OptionsError(f"{OPTION}: the reference clip of {name!r} is shorter than {MIN_CLIP_S} s", OPTION)
    return samples


def load_known_voices(pairs: tuple[tuple[str, str], ...], encoder: SpeakerEncoder) -> list[KnownVoice]:
    """Decode and embed each (name, data URL) reference."""
    return [KnownVoice(name, encoder.embed(clip_samples(name, url))) for name, url in pairs]


def name_speakers(
    turns: list[SpeakerTurn], samples: np.ndarray, voices: list[KnownVoice], encoder: SpeakerEncoder
) -> list[SpeakerTurn]:
    """`turns` with each speaker that matches a known voice renamed to it (one to one)."""
    from scipy.optimize import linear_sum_assignment

    labels = list(dict.fromkeys(t.speaker for t in turns if not t.overlap))
    if not voices or not labels:
        return turns
    speech = [speaker_speech(turns, samples, label) for label in labels]
    centres = np.stack([encoder.embed(s) for s in speech])
    similarity = np.stack([v.embedding for v in voices]) @ centres.T
    rows, cols = linear_sum_assignment(-similarity)
    names = {}
    for row, col in zip(rows, cols):
        log.debug("known voice %s ~ %s: %.3f", voices[row].name, labels[col], similarity[row, col])
        if similarity[row, col] >= NAME_THRESHOLD:
            names[labels[col]] = voices[row].name
    return [dataclasses.replace(t, speaker=names.get(t.speaker, t.speaker)) for t in turns]


def speaker_speech(turns: list[SpeakerTurn], samples: np.ndarray, label: str) -> np.ndarray:
    """The audio of `label`'s own turns (not overlapped ones), joined, up to MAX_SPEECH_S."""
    pieces, total = [], 0
    for turn in turns:
        if turn.speaker != label or turn.overlap:
            continue
        piece = samples[int(turn.start * SAMPLE_RATE) : int(turn.end * SAMPLE_RATE)]
        pieces.append(piece[: int(MAX_SPEECH_S * SAMPLE_RATE) - total])
        total += len(pieces[-1])
        if total >= MAX_SPEECH_S * SAMPLE_RATE:
            break
    joined = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    return joined if len(joined) >= HOP else np.zeros(HOP * 2, dtype=np.float32)
