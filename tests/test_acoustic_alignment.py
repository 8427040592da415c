"""Acoustic word alignment: the aligner on reference word boundaries, its fallbacks, and the pipeline
using it for English word times (and cross-attention times where it does not apply)."""

from __future__ import annotations

import numpy as np
import pytest

from amanuensis.asr.acoustic_alignment import AcousticAligner, align_segments
from amanuensis.asr.chunking import Chunk
from amanuensis.asr.vad import detect_speech
from amanuensis.audio import SAMPLE_RATE, decode_audio
from amanuensis.bench import words as bench_words
from amanuensis.evaluation import normalize
from amanuensis.transcript import Segment, Word

from .conftest import DATA

WORDTIMES = DATA.parent / "wordtimes" / "alignments.tsv"


@pytest.fixture(scope="module")
def references() -> dict:
    return bench_words.read_alignments(WORDTIMES)


@pytest.fixture(scope="module")
def aligner() -> AcousticAligner:
    return AcousticAligner()


def test_reference_text_aligns_onto_the_reference_boundaries(aligner, references):
    errors = []
    for path, reference in references.items():
        times = aligner.align(decode_audio(path), [w.word for w in reference])
        assert times is not None, path.name
        errors += [max(abs(s - w.start), abs(e - w.end)) for w, (s, e) in zip(reference, times, strict=True)
                   if normalize(w.word) and not w.word.startswith("<")]  # hesitations have no agreed edges
    errors = np.array(errors)
    assert len(errors) >= 150
    assert np.mean(errors <= 0.1) >= 0.8, np.percentile(errors, [50, 90, 99])  # attention times: under 0.6
    assert np.mean(errors <= 0.2) >= 0.93


def test_unknown_and_hyphenated_words_are_timed_and_too_little_audio_is_refused(aligner, references):
    path, reference = next(iter(references.items()))
    audio = decode_audio(path)
    text = [w.word for w in reference]
    text[2] = "Zqxwv,"  # not in the dictionary: phones from its letters
    text[3] = "well-known"  # two dictionary words, one word's time
    text[4] = "…"  # no letters: one unit of generic speech
    times = aligner.align(audio, text)
    assert times is not None and len(times) == len(text)
    assert all(a <= b for a, b in times) and all(times[k][1] <= times[k + 1][0] + 1e-9 for k in range(len(times) - 1))
    assert aligner.align(audio[: SAMPLE_RATE // 20], text) is None  # 50 ms cannot hold them
    assert aligner.align(audio, []) is None


def test_segments_move_onto_their_aligned_words_and_keep_them_on_failure(aligner, references):
    path, reference = next(iter(references.items()))
    audio = decode_audio(path)
    late = [Word(w.word, w.start + 0.3, w.end + 0.3, 0.9) for w in reference[:6]]  # attention-like lag
    segment = Segment(id=0, start=late[0].start, end=late[-1].end, text=" ".join(w.word for w in late), words=late)
    speech = detect_speech(audio).silero
    assert align_segments(aligner, [segment], Chunk(0, [(0, len(audio))]), audio, speech)
    for word, truth in zip(segment.words, reference, strict=False):
        assert abs(word.start - truth.start) <= 0.1 and abs(word.end - truth.end) <= 0.1, (word, truth)
    assert (segment.start, segment.end) == (segment.words[0].start, segment.words[-1].end)

    silent = Segment(id=0, start=0.0, end=0.5, text="hello there", words=[Word("hello", 0.0, 0.2, 0.9),
                                                                           Word("there", 0.2, 0.5, 0.9)])
    assert not align_segments(aligner, [silent], Chunk(0, [(0, SAMPLE_RATE // 20)]),
                              np.zeros(SAMPLE_RATE // 20, np.float32), np.zeros(2))
    assert [(w.start, w.end) for w in silent.words] == [(0.0, 0.2), (0.2, 0.5)]


def test_words_are_aligned_on_the_audio_the_decoder_heard_never_in_a_pause_cut_out(aligner, references):
    path, reference = next(iter(references.items()))
    audio = decode_audio(path)
    first, second = reference[:5], reference[5:9]  # "this is the acoustic corpus" | "i'm talking pretty fast"
    join = round(first[-1].end * SAMPLE_RATE)
    noise = (np.random.default_rng(0).standard_normal(SAMPLE_RATE) * 0.3).astype(np.float32)  # the VAD cut it out
    joined = np.concatenate([audio[:join], noise, audio[join:round((second[-1].end + 0.3) * SAMPLE_RATE)]])
    chunk = Chunk(0, [(0, join), (join + len(noise), len(joined))])
    assert chunk.to_chunk(0.5) == pytest.approx(0.5)
    assert chunk.to_chunk(first[-1].end + 0.3) == pytest.approx(first[-1].end)  # in the cut: its nearest edge
    assert chunk.to_chunk(second[0].start + 1.0) == pytest.approx(second[0].start)
    words = [Word(w.word, w.start, w.end, 0.9) for w in first] + [Word(w.word, w.start + 1.0, w.end + 1.0, 0.9)
                                                                   for w in second]
    segment = Segment(id=0, start=words[0].start, end=words[-1].end, text="", words=words)
    assert align_segments(aligner, [segment], chunk, joined, detect_speech(joined).silero)
    for word, truth in zip(segment.words, first + second, strict=True):
        shift = 1.0 if truth in second else 0.0
        assert not join / SAMPLE_RATE < (word.start + word.end) / 2 < join / SAMPLE_RATE + 1.0, word
        assert abs(word.start - truth.start - shift) <= 0.1 and abs(word.end - truth.end - shift) <= 0.1, word


def test_english_word_times_are_acoustic_by_default_and_attention_on_request(transcriber, references):
    from amanuensis.pipeline import TranscribeOptions

    path, reference = next(iter(references.items()))
    audio = decode_audio(path)
    scored = {}
    for alignment in ("acoustic", "attention"):
        transcript = transcriber.transcribe(audio, TranscribeOptions(word_timestamps=True, word_alignment=alignment))
        timed = [bench_words.TimedWord(w.word, w.start, w.end) for s in transcript.segments for w in s.words]
        for segment in transcript.segments:
            assert segment.start <= segment.words[0].start and segment.words[-1].end <= segment.end
        scored[alignment] = bench_words.score(bench_words.match_words(reference, timed), len(reference), len(timed))
    assert scored["acoustic"]["matched"] == scored["attention"]["matched"]  # the same text, other times
    assert scored["acoustic"]["within_100"] > scored["attention"]["within_100"], scored


def test_threads_align_at_once_with_their_own_decoders_and_few_are_kept(references):
    from concurrent.futures import ThreadPoolExecutor

    from amanuensis.asr.acoustic_alignment import KEPT_DECODERS

    aligner = AcousticAligner()
    jobs = [(decode_audio(path), [w.word for w in reference]) for path, reference in references.items()]
    alone = [aligner.align(audio, text) for audio, text in jobs]
    with ThreadPoolExecutor(len(jobs)) as pool:
        together = list(pool.map(lambda job: aligner.align(*job), jobs))
    assert together == alone and all(times is not None for times in alone)
    assert aligner._idle.qsize() <= KEPT_DECODERS
