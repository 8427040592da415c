"""Halting speech: real clips with pauses of 1.5–3 s inserted between words inside sentences.

The pauses are cut in at word boundaries found by the model's own word timestamps on the clean clip
(at the quietest 10 ms between the two words). Every word of the clean transcript must come out, in
order, at its place in the new audio, and no word or segment may sit in an inserted pause.
"""

from __future__ import annotations

import difflib
import re

import numpy as np
import pytest

from amanuensis.audio import SAMPLE_RATE, decode_audio
from amanuensis.pipeline import TranscribeOptions

from .conftest import DATA

CLIPS = [
    "whisper/jfk.flac",
    "TTS/LJ001-0001.wav",
    "lhotse/2412-153948-0000.flac",
    "faster-whisper/stereo_diarization_left.flac",
    "pocketsphinx/sense_and_sensibility_01_austen_64kb-0870.wav",
]
PAUSES_PER_CLIP = 3
TOLERANCE_S = 0.25
"""A word or segment edge may reach this far into a pause (the VAD pads speech by 0.2 s)."""


def _plain(word: str) -> str:
    """A word compared by its first six letters: an ending heard differently after a pause
    ("concern" for "concerned") is a recognition error, not a lost word."""
    return re.sub(r"[^a-z0-9']", "", word.lower())[:6]


def _with_pauses(audio: np.ndarray, words: list, rng: np.random.Generator):
    """The clip with pauses cut in at some word boundaries inside sentences; returns the audio, the
    pauses (start, end) in new time, and a function from old to new time."""
    frame = SAMPLE_RATE // 100
    loud = np.quantile([float(np.mean(audio[i : i + frame] ** 2)) for i in range(0, len(audio) - frame, frame)], 0.9)
    gaps = {}
    for k in range(len(words) - 1):
        if words[k].word.strip().endswith((".", "?", "!")):
            continue  # a sentence ends here: pauses go inside sentences
        lo = int((min(words[k].end, words[k + 1].start) - 0.03) * SAMPLE_RATE)
        hi = int((max(words[k].end, words[k + 1].start) + 0.03) * SAMPLE_RATE)
        quiet = [float(np.mean(audio[i : i + frame] ** 2)) < 0.01 * loud for i in range(lo, hi - frame, frame)]
        run, best = 0, (0, 0)
        for j, q in enumerate(quiet):  # the longest stretch 20 dB under the speech: a real gap, not a cut in a word
            run = run + 1 if q else 0
            best = max(best, (run, j))
        if best[0] >= 3:
            gaps[k] = lo + (best[1] - best[0] // 2) * frame + frame // 2
    picks = sorted(rng.choice(sorted(gaps), size=min(PAUSES_PER_CLIP, len(gaps)), replace=False).tolist())
    parts, pauses, cuts, position, shift = [], [], [], 0, 0.0
    for k in picks:
        cut = max(position, gaps[k])
        seconds = float(rng.uniform(1.5, 3.0))
        parts.append(audio[position:cut])
        start = cut / SAMPLE_RATE + shift
        parts.append((rng.standard_normal(int(seconds * SAMPLE_RATE)) * 1e-4).astype(np.float32))
        pauses.append((start, start + seconds))
        cuts.append((cut / SAMPLE_RATE, seconds))
        shift += seconds
        position = cut
    parts.append(audio[position:])

    def moved(t: float) -> float:
        return t + sum(seconds for at, seconds in cuts if at <= t)

    return np.concatenate(parts), pauses, moved


def _overlap(a: float, b: float, pause: tuple[float, float]) -> float:
    return min(b, pause[1]) - max(a, pause[0])


@pytest.fixture(scope="module")
def halting(transcriber):
    rng = np.random.default_rng(12)
    cases = []
    for clip in CLIPS:
        audio = decode_audio(DATA / clip)
        clean = transcriber.transcribe(audio, TranscribeOptions(word_timestamps=True))
        words = [w for s in clean.segments for w in s.words]
        samples, pauses, moved = _with_pauses(audio, words, rng)
        out = transcriber.transcribe(samples, TranscribeOptions(word_timestamps=True))
        plain = transcriber.transcribe(samples, TranscribeOptions())
        cases.append((clip, words, samples, pauses, moved, out, plain))
    return cases


@pytest.mark.slow
def test_every_word_comes_out_in_order_at_its_place(halting):
    for clip, words, samples, _, moved, out, _ in halting:
        got = [w for s in out.segments for w in s.words]
        expected, found = [_plain(w.word) for w in words], [_plain(w.word) for w in got]
        matched = {}
        for block in difflib.SequenceMatcher(None, expected, found, autojunk=False).get_matching_blocks():
            matched.update({block.a + i: block.b + i for i in range(block.size)})
        missing = [words[i].word for i in range(len(words)) if i not in matched]
        assert not missing, f"{clip}: {missing} missing from {' '.join(found)!r}"
        for i, word in enumerate(words):
            # a word next to a cut may be on either side of it: the clean alignment is good to about 0.3 s
            start, end, out_word = moved(word.start - 0.3) - 0.3, moved(word.end + 0.3) + 0.3, got[matched[i]]
            assert start <= (out_word.start + out_word.end) / 2 <= end, (clip, word.word, start, end, out_word)
        starts = [w.start for w in got]
        assert starts == sorted(starts), clip
        assert all(0.0 <= w.start <= w.end <= len(samples) / SAMPLE_RATE for w in got), clip


@pytest.mark.slow
def test_no_word_or_segment_sits_in_an_inserted_pause(halting):
    for clip, _, _, pauses, _, out, plain in halting:
        for word in (w for s in out.segments for w in s.words):
            for pause in pauses:
                assert _overlap(word.start, word.end, pause) <= TOLERANCE_S, (clip, word, pause)
        for segment in [*out.segments, *plain.segments]:
            for pause in pauses:
                for edge in (segment.start, segment.end):
                    assert not pause[0] + TOLERANCE_S < edge < pause[1] - TOLERANCE_S, (clip, segment, pause)
