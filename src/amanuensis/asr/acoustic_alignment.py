"""Word times from an acoustic forced alignment of English transcripts (PocketSphinx's HMM aligner and
the US English acoustic model and dictionary its wheel ships, so nothing is downloaded).

Cross-attention times (alignment.py) come from a model that was never trained to place words: they
lag the speech and put a boundary a short word away. An HMM aligner fits every phone of the known
words to the audio at 10 ms a frame. The words of one chunk are aligned to the chunk's audio through a
linear grammar with optional hesitations ("uh", "um") and silence between words and at both ends,
because Whisper leaves hesitations out of its text and an aligner without them stretches the next word
over them. A word the dictionary lacks gets phones from its letters; a hyphenated word is its parts.
When the aligner finds no path through the grammar the caller keeps the attention times.
"""

from __future__ import annotations

import logging
import queue
import re
from collections.abc import Sequence

import numpy as np

from ..constants import SAMPLE_RATE
from ..transcript import Segment
from .chunking import Chunk
from .speech_time import trim_span

log = logging.getLogger(__name__)

FRAMES_PER_SECOND = 100
HESITATIONS = {"+uh+": "AH", "+um+": "AH M"}
"""Optional words between the transcript's words: the sounds of hesitations Whisper does not write."""
UNKNOWN = "+oov+"
"""A word without a letter or digit: one generic-speech unit (the model's +SPN+ filler phone)."""
HESITATION_WEIGHT = 0.02
"""The probability of each hesitation loop against going on to the next word."""
BEAM = 1e-80
"""Wide beams: a pruned alignment finds no path and the word falls back to attention times."""
KEPT_DECODERS = 2
"""Idle decoders kept for the next alignments (about 28 MB each); more concurrent ones are freed after use."""
BLOCK_SAMPLES = SAMPLE_RATE // 10
"""Audio fed to the decoder per call: the GIL is held for one call (a few ms), not a whole chunk."""
PAUSE_S = 0.1
"""A gap this long between aligned words is a pause: the words' edges at it are checked against the VAD."""
PAD_S = 0.5
"""Audio aligned beyond the chunk's first and last word (attention times can be that far off)."""
NOT_WORDS = {"<s>", "</s>", "<sil>", "[NOISE]", "[SPEECH]", *HESITATIONS}

_PART = re.compile(r"[a-z0-9']+")
_LETTERS = [  # a rough spelling-to-sound guide for words outside the dictionary (names, new terms)
    ("tion", "SH AH N"), ("tch", "CH"), ("sch", "S K"), ("th", "TH"), ("sh", "SH"), ("ch", "CH"), ("ph", "F"),
    ("ng", "NG"), ("ck", "K"), ("qu", "K W"), ("wh", "W"), ("ee", "IY"), ("ea", "IY"), ("oo", "UW"),
    ("ou", "AW"), ("ow", "OW"), ("oi", "OY"), ("oy", "OY"), ("ai", "EY"), ("ay", "EY"), ("au", "AO"),
    ("er", "ER"), ("ar", "AA R"), ("or", "AO R"), ("a", "AE"), ("b", "B"), ("c", "K"), ("d", "D"), ("e", "EH"),
    ("f", "F"), ("g", "G"), ("h", "HH"), ("i", "IH"), ("j", "JH"), ("k", "K"), ("l", "L"), ("m", "M"),
    ("n", "N"), ("o", "AA"), ("p", "P"), ("r", "R"), ("s", "S"), ("t", "T"), ("u", "AH"), ("v", "V"),
    ("w", "W"), ("x", "K S"), ("y", "IY"), ("z", "Z"),
]
_DIGITS = ["Z IH R OW", "W AH N", "T UW", "TH R IY", "F AO R", "F AY V", "S IH K S", "S EH V AH N", "EY T", "N AY N"]


def spelled(word: str) -> str:
    """Phones for a word the dictionary lacks, from its letters (digits are read one by one)."""
    phones, k = [], 0
    while k < len(word):
        if word[k].isdigit():
            phones.append(_DIGITS[int(word[k])])
            k += 1
            continue
        match = next(((letters, sounds) for letters, sounds in _LETTERS if word.startswith(letters, k)), None)
        if match is None:  # an apostrophe
            k += 1
            continue
        if not phones or phones[-1] != match[1]:  # a doubled letter is one sound
            phones.append(match[1])
        k += len(match[0])
    return " ".join(phones)


def available() -> bool:
    """Whether PocketSphinx is installed (a dependency of the package; False only in a stripped install)."""
    try:
        import pocketsphinx  # noqa: F401
    except ImportError:
        return False
    return True


class AcousticAligner:
    """Aligns words to audio; safe to share between threads (each alignment takes a decoder of its own)."""

    def __init__(self) -> None:
        self._idle: queue.SimpleQueue = queue.SimpleQueue()

    def align(self, audio: np.ndarray, words: Sequence[str]) -> list[tuple[float, float]] | None:
        """(start, end) in seconds from the start of `audio` (16 kHz mono float32) for each word, in
        order; None when the audio cannot hold the words or the aligner finds no path."""
        if not words or len(audio) < SAMPLE_RATE // 10:
            return None
        decoder = self._take()
        try:
            return self._align(decoder, audio, words)
        except (RuntimeError, ValueError) as exc:  # the caller keeps the attention times
            log.warning("acoustic alignment failed: %s", exc)
            return None
        finally:
            if self._idle.qsize() < KEPT_DECODERS:
                self._idle.put(decoder)

    def _take(self) -> object:
        """An idle decoder, or a new one (about 0.2 s to load)."""
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            from pocketsphinx import Decoder

            decoder = Decoder(samprate=SAMPLE_RATE, lm=None, bestpath=False, loglevel="FATAL",
                              beam=BEAM, wbeam=BEAM, pbeam=BEAM)
            added = [(UNKNOWN, "+SPN+"), *HESITATIONS.items()]
            for k, (word, phones) in enumerate(added):
                decoder.add_word(word, phones, k == len(added) - 1)  # the search is rebuilt once, at the last
            return decoder

    @staticmethod
    def _align(decoder: object, audio: np.ndarray, words: Sequence[str]) -> list[tuple[float, float]] | None:
        tokens, owners = [], []
        for k, word in enumerate(words):
            for part in _PART.findall(word.lower().replace("’", "'")) or [UNKNOWN]:
                part = part.strip("'")
                phones = spelled(part) if part and not decoder.lookup_word(part) else ""
                if phones:
                    decoder.add_word(part, phones, True)  # kept: the next alignment finds it
                tokens.append(part if part else UNKNOWN)
                owners.append(k)
        transitions = []
        for state, token in enumerate(tokens):
            transitions.append((state, state + 1, 1.0 - len(HESITATIONS) * HESITATION_WEIGHT, token))
            transitions += [(state, state, HESITATION_WEIGHT, filler) for filler in HESITATIONS]
        transitions += [(len(tokens), len(tokens), HESITATION_WEIGHT, filler) for filler in HESITATIONS]
        decoder.add_fsg("words", decoder.create_fsg("words", 0, len(tokens), transitions))
        decoder.activate_search("words")
        pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
        decoder.reinit_feat()  # the cepstral mean starts from the model's, not the last recording's: same answer
        decoder.start_utt()
        for start in range(0, len(pcm), BLOCK_SAMPLES):  # the GIL is held per call: other threads run between
            decoder.process_raw(pcm[start:start + BLOCK_SAMPLES].tobytes())
        decoder.end_utt()
        if decoder.hyp() is None:
            return None
        found = [s for s in decoder.seg() if s.word.split("(")[0] not in NOT_WORDS]
        if [s.word.split("(")[0] for s in found] != tokens:
            log.debug("acoustic alignment lost its words: %s", [s.word for s in found])
            return None
        times: list[list[float]] = [[] for _ in words]
        for owner, seg in zip(owners, found, strict=True):
            times[owner] += [seg.start_frame / FRAMES_PER_SECOND, (seg.end_frame + 1) / FRAMES_PER_SECOND]
        return [(min(t), max(t)) for t in times]


def align_segments(aligner: AcousticAligner, segments: list[Segment], chunk: Chunk, samples: np.ndarray,
                   speech: np.ndarray) -> bool:
    """Move the words of one chunk's `segments` (original time) to their acoustic alignment over the audio
    the decoder heard (the chunk's pieces, from `PAD_S` before the first word to `PAD_S` after the last),
    and each segment onto its words. A word's edge at a pause is cut to the speech Silero heard
    (`speech`: its frame scores), as the aligner's silence model takes steady noise for speech; edges
    inside running speech are the aligner's. False (times unchanged) when the aligner finds no path."""
    words = [word for segment in segments for word in segment.words or []]
    if not words:
        return False
    lo = max(0.0, chunk.to_chunk(words[0].start) - PAD_S)
    hi = min(chunk.duration, max(chunk.to_chunk(words[-1].end), lo) + PAD_S)
    audio = chunk.audio(samples)[round(lo * SAMPLE_RATE):round(hi * SAMPLE_RATE)]
    times = aligner.align(audio, [w.word for w in words])
    if times is None:
        return False
    spans = [chunk.span_to_original(lo + start, lo + end) for start, end in times]
    for k, (word, (start, end)) in enumerate(zip(words, spans, strict=True)):
        after_pause = k == 0 or start - spans[k - 1][1] >= PAUSE_S
        before_pause = k == len(words) - 1 or spans[k + 1][0] - end >= PAUSE_S
        trimmed = trim_span(speech, start, end) if after_pause or before_pause else (start, end)
        word.start = trimmed[0] if after_pause else start
        word.end = trimmed[1] if before_pause else end
    for segment in segments:
        if segment.words:
            segment.start, segment.end = segment.words[0].start, segment.words[-1].end
    return True
