"""Nothing made up on non-speech, words where they were said: Silero's own scores beside the gated
ones, the made-up-segment rule, word placement, and the benches that measure them (bench words,
bench nonspeech)."""

from __future__ import annotations

import numpy as np
import pytest

from amanuensis.asr.decoding import DecodeSettings
from amanuensis.asr.nonspeech import heard_speech, made_up
from amanuensis.asr.speech_time import FRAME_S
from amanuensis.asr.vad import detect_speech
from amanuensis.asr.word_timing import ALIGNMENT_LAG_S, place_word
from amanuensis.audio import SAMPLE_RATE
from amanuensis.bench import nonspeech, signals, words
from amanuensis.transcript import Segment

from .conftest import DATA


def _segment(text: str, start: float, end: float, no_speech: float, logprob: float) -> Segment:
    return Segment(id=0, start=start, end=end, text=text, avg_logprob=logprob, no_speech_prob=no_speech,
                   compression_ratio=1.0, temperature=0.0, tokens=[])


def test_the_vad_result_keeps_silero_scores_apart_from_the_energy_gated_ones():
    samples = np.random.default_rng(0).standard_normal(3 * SAMPLE_RATE).astype(np.float32) * 0.1  # loud noise
    result = detect_speech(samples)
    assert result.silero is not None and result.silero.max() < 0.5  # Silero hears no speech in noise
    assert result.probs.max() == 1.0  # the gate calls it loud enough: the segment rule must judge the text


def test_a_segment_is_made_up_when_the_decoder_doubted_it_and_silero_heard_nothing():
    settings = DecodeSettings()
    silero = np.zeros(round(10 / FRAME_S), dtype=np.float32)
    silero[round(6 / FRAME_S) : round(7 / FRAME_S)] = 0.9  # speech 6-7 s
    assert heard_speech(silero, 6.2, 6.4) and not heard_speech(silero, 1.0, 3.0)
    assert made_up(_segment(" Thank you.", 1.0, 2.0, no_speech=0.96, logprob=-0.8), silero, settings)
    assert made_up(_segment(" I don't", 1.0, 2.0, no_speech=0.1, logprob=-1.3), silero, settings)
    assert not made_up(_segment(" Thank you.", 6.0, 7.0, no_speech=0.96, logprob=-0.8), silero, settings)
    assert not made_up(_segment(" psst, over here", 1.0, 2.0, no_speech=0.1, logprob=-0.3), silero, settings)
    assert made_up(_segment(" . . .", 6.0, 7.0, no_speech=0.0, logprob=-0.1), silero, settings)  # no word
    assert not made_up(_segment(" [unintelligible]", 6.0, 7.0, no_speech=0.9, logprob=-2.0), silero, settings)


def test_a_word_loses_the_alignment_lag_and_the_pause_it_was_stretched_over():
    silero = np.zeros(round(10 / FRAME_S), dtype=np.float32)
    silero[round(1.0 / FRAME_S) : round(2.0 / FRAME_S)] = 0.9  # speech 1-2 s
    silero[round(4.0 / FRAME_S) : round(5.0 / FRAME_S)] = 0.9  # speech 4-5 s
    start, end = place_word(silero, 1.5, 1.8)  # inside speech: only the lag comes off
    assert (start, end) == pytest.approx((1.5 - ALIGNMENT_LAG_S, 1.8 - ALIGNMENT_LAG_S))
    start, end = place_word(silero, 2.1, 4.6)  # said after the pause, aligned from its start
    assert start == pytest.approx(3.9, abs=0.04) and end == pytest.approx(4.6 - ALIGNMENT_LAG_S)
    start, end = place_word(silero, 0.0, 1.4)  # the first word of a recording, aligned from 0.0
    assert start == pytest.approx(0.9, abs=0.04)


def test_reference_word_times_are_read_and_matched_by_normalised_text(tmp_path):
    folder = tmp_path / "wordtimes"
    folder.mkdir()
    tsv = folder / "alignments.tsv"
    tsv.write_text("path\tword\tstart\tend\nspeech/a.wav\tmister\t1.0\t1.3\nspeech/a.wav\tsmith\t1.3\t1.8\n"
                   "speech/a.wav\tran\t2.0\t2.4\n", encoding="utf-8")
    refs = words.read_alignments(tsv)
    assert list(refs) == [(tmp_path / "speech" / "a.wav").resolve()]
    ref = next(iter(refs.values()))
    hyp = [words.TimedWord(" Mr.", 1.05, 1.25), words.TimedWord(" Smith", 1.4, 1.9),
           words.TimedWord(" ran", 2.3, 2.5), words.TimedWord(" away", 2.5, 2.8)]
    pairs = words.match_words(ref, hyp)
    assert [(r.word, h.word) for r, h in pairs] == [("mister", " Mr."), ("smith", " Smith"), ("ran", " ran")]
    row = words.score(pairs, 3, 4)
    assert row["matched"] == 3 and row["timed"] == 4
    assert row["start_bias_ms"] == pytest.approx((50 + 100 + 300) / 3, abs=0.1)
    assert row["end_bias_ms"] == pytest.approx((-50 + 100 + 100) / 3, abs=0.1)
    assert row["within_50"] == pytest.approx(1 / 3, abs=1e-3)
    assert row["within_100"] == pytest.approx(2 / 3, abs=1e-3)
    assert row["within_200"] == pytest.approx(2 / 3, abs=1e-3)
    bad = folder / "bad.tsv"
    bad.write_text("speech/a.wav\tword\t1.0\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.tsv:1"):
        words.read_alignments(bad)


def test_generated_non_speech_has_its_level_and_length():
    catalogue = signals.catalogue(2.0)
    kinds = {kind for kind, _, _ in catalogue}
    assert kinds == {"silence", "room tone", "noise", "music"}
    for _, name, audio in catalogue:
        assert len(audio) == 2 * SAMPLE_RATE and audio.dtype == np.float32
        if "dBFS" in name:
            level = float(name.split()[-2])
            rms = 20 * np.log10(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
            assert rms == pytest.approx(level, abs=0.5), name


def test_meeting_turns_are_read_and_words_outside_them_are_false_alarms(tmp_path):
    rttm = tmp_path / "ref.rttm"
    rttm.write_text("SPEAKER m1 1 1.0 2.0 <NA> <NA> A <NA> <NA>\nSPEAKER m1 1 2.5 1.5 <NA> <NA> B <NA> <NA>\n",
                    encoding="utf-8")
    turns = nonspeech.read_rttm(rttm)["m1"]
    assert turns == [(1.0, 3.0), (2.5, 4.0)]
    assert nonspeech.speech_seconds(turns, 30.0) == pytest.approx(3.0)
    assert nonspeech.in_turns(words.TimedWord("hi", 4.1, 4.3), turns)  # within the 0.25 s collar
    assert not nonspeech.in_turns(words.TimedWord("hi", 4.3, 4.6), turns)


def test_music_and_noise_come_out_without_a_word(transcriber):
    from amanuensis.pipeline import TranscribeOptions

    for audio in (signals.melody_with_drums(10.0), signals.chords(10.0), signals.noise("pink", 10.0, -50)):
        transcript = transcriber.transcribe(audio, TranscribeOptions(word_timestamps=True))
        assert transcript.segments == [], transcript.text


def test_speech_still_comes_out_with_word_times_on_its_speech(transcriber):
    from amanuensis.audio import decode_audio
    from amanuensis.pipeline import TranscribeOptions

    samples = decode_audio(DATA / "whisper" / "jfk.flac")
    padded = np.concatenate([np.zeros(3 * SAMPLE_RATE, dtype=np.float32), samples])
    transcript = transcriber.transcribe(padded, TranscribeOptions(word_timestamps=True))
    assert "country" in transcript.text
    first = transcript.segments[0].words[0]
    assert first.start >= 3.0  # never in the silence before the speech


def test_a_long_region_in_a_loud_room_is_cut_at_silero_s_pause_not_inside_a_word():
    from amanuensis.asr.chunking import pause_scores, split_long_regions
    from amanuensis.asr.vad import FRAME_SAMPLES

    frames = 1500  # 48 s, one region
    gated = np.ones(frames, dtype=np.float32)  # the energy gate calls the whole loud room speech
    silero = np.full(frames, 0.9, dtype=np.float32)
    silero[700:706] = 0.02  # the one pause Silero hears, at 22.4 s
    region = [(0, frames * FRAME_SAMPLES)]
    blind = split_long_regions(region, gated)[0][1] // FRAME_SAMPLES
    assert not 700 <= blind < 706  # the gated scores alone have no quietest frame
    cut = split_long_regions(region, pause_scores(gated, silero))[0][1] // FRAME_SAMPLES
    assert 700 <= cut < 706
    assert pause_scores(gated, gated) is gated
