"""Silero VAD: block-wise scoring, hysteresis, padding; real speech and silence."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from amanuensis.asr.vad import (
    BLOCK_FRAMES,
    FRAME_SAMPLES,
    VadOptions,
    default_vad,
    detect_speech,
    pad_regions,
    regions_from_probs,
)
from amanuensis.audio import SAMPLE_RATE, decode_audio

from .conftest import DATA, JFK


def _probs(pattern: str) -> np.ndarray:
    """One frame per character: '#' speech (0.9), '.' silence (0.05), '~' in between (0.4)."""
    return np.array([{"#": 0.9, ".": 0.05, "~": 0.4}[c] for c in pattern], dtype=np.float32)


def test_short_pauses_stay_inside_a_region_and_long_ones_split_it():
    options = VadOptions(min_silence_ms=100, speech_pad_ms=0)  # 100 ms = 3 frames
    probs = _probs("....####..####......###.....")
    regions = regions_from_probs(probs, len(probs) * FRAME_SAMPLES, options)
    assert regions == [(4 * FRAME_SAMPLES, 14 * FRAME_SAMPLES), (20 * FRAME_SAMPLES, 23 * FRAME_SAMPLES)]


def test_short_leading_and_trailing_silences_are_kept_like_short_pauses():
    options = VadOptions(min_silence_ms=100, speech_pad_ms=0)  # 100 ms = 3 frames
    probs = _probs("..####..")
    assert regions_from_probs(probs, len(probs) * FRAME_SAMPLES, options) == [(0, len(probs) * FRAME_SAMPLES)]


def test_hysteresis_keeps_speech_going_between_the_two_thresholds():
    options = VadOptions(min_silence_ms=64, speech_pad_ms=0)  # 2 frames
    probs = _probs("....##~~~~##....")
    assert regions_from_probs(probs, len(probs) * FRAME_SAMPLES, options) == [
        (4 * FRAME_SAMPLES, 12 * FRAME_SAMPLES)
    ]


def test_padding_splits_narrow_gaps_in_half_and_clamps_to_the_audio():
    assert pad_regions([(100, 200), (260, 400)], 420, 50) == [(50, 230), (230, 420)]
    assert pad_regions([(0, 100), (400, 500)], 500, 50) == [(0, 150), (350, 500)]


def test_silence_has_no_speech():
    result = detect_speech(np.zeros(5 * SAMPLE_RATE, dtype=np.float32))
    assert result.regions == []
    assert result.probs.max() < 0.5


def test_jfk_speech_is_found_and_regions_are_sorted_inside_the_audio():
    samples = decode_audio(JFK)
    result = detect_speech(samples)
    assert result.regions
    assert 6.0 < result.speech_seconds <= len(samples) / SAMPLE_RATE
    flat = [x for region in result.regions for x in region]
    assert flat == sorted(flat) and flat[0] >= 0 and flat[-1] <= len(samples)


def test_block_wise_scoring_matches_one_call_of_faster_whispers_vad():
    from faster_whisper.vad import get_vad_model

    clip = decode_audio(DATA / "whisper" / "jfk.flac")
    samples = np.concatenate([clip] * (BLOCK_FRAMES * FRAME_SAMPLES // len(clip) + 2))
    ours = default_vad().probabilities(samples)
    padded = np.pad(samples, (0, FRAME_SAMPLES - len(samples) % FRAME_SAMPLES))
    theirs = np.asarray(get_vad_model()(padded)).reshape(-1)[: len(ours)]
    assert len(ours) == -(-len(samples) // FRAME_SAMPLES)
    assert np.abs(ours - theirs).max() < 0.05


@pytest.mark.parametrize("seconds", [0.01, 0.5])
def test_very_short_audio_is_scored(seconds):
    samples = np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)
    assert len(default_vad().probabilities(samples)) == -(-len(samples) // FRAME_SAMPLES)


def test_a_requests_threshold_changes_the_regions_found_on_real_speech():
    samples = decode_audio(JFK)
    default = detect_speech(samples, VadOptions())
    strict = detect_speech(samples, VadOptions(threshold=0.9))
    assert len(default.regions) == 1
    assert strict.regions != default.regions and strict.speech_seconds < default.speech_seconds


def test_a_requests_silence_and_padding_change_the_regions_around_a_pause():
    speech = decode_audio(JFK)
    pause = np.zeros(int(1.5 * SAMPLE_RATE), dtype=np.float32)  # JFK, 1.5 s of silence, JFK again
    samples = np.concatenate([speech, pause, speech])
    split = detect_speech(samples, VadOptions())  # a pause of 1 s or more splits
    assert len(split.regions) == 2
    assert len(detect_speech(samples, VadOptions(min_silence_ms=2000)).regions) == 1
    unpadded = detect_speech(samples, VadOptions(speech_pad_ms=0))
    assert len(unpadded.regions) == 2 and unpadded.speech_seconds < split.speech_seconds - 0.3


def test_the_vad_options_reach_the_vad_of_both_modes(transcriber, monkeypatch):
    """Each mode's VAD gets exactly the request's settings; unset, exactly its own defaults."""
    from amanuensis.asr import batched
    from amanuensis.options import TranscribeOptions

    seen: list = []
    real_detect = batched.detect_speech
    monkeypatch.setattr(batched, "detect_speech", lambda s, options, vad: seen.append(options) or real_detect(
        s, options, vad))
    real_transcribe = transcriber.whisper.transcribe
    monkeypatch.setattr(transcriber.whisper, "transcribe", lambda *a, **kw: seen.append(kw["vad_parameters"])
                        or real_transcribe(*a, **kw))
    samples = decode_audio(JFK)
    asked = TranscribeOptions(vad_threshold=0.9, vad_min_silence_ms=300, vad_speech_pad_ms=100)
    for mode in ("batched", "sequential"):
        transcriber.transcribe(samples, TranscribeOptions(mode=mode))
        transcriber.transcribe(samples, replace(asked, mode=mode))
    assert seen == [VadOptions(), VadOptions(threshold=0.9, min_silence_ms=300, speech_pad_ms=100), {},
                    {"threshold": 0.9, "min_silence_duration_ms": 300, "speech_pad_ms": 100}]
    assert asked.vad_settings() == {"threshold": 0.9, "min_silence_ms": 300, "speech_pad_ms": 100}
