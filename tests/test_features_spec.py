"""The log-mel contract: filterbank, frame counts, reference values, framing without a full pad."""

from __future__ import annotations

import numpy as np
import pytest
from faster_whisper.feature_extractor import FeatureExtractor

from amanuensis.features import framing, spec


@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filters_match_faster_whisper_slaney_filters(n_mels):
    theirs = FeatureExtractor.get_mel_filters(16000, 400, n_mels=n_mels)
    ours = spec.mel_filters(n_mels)
    assert ours.shape == (n_mels, 201)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)
    assert np.all((ours != 0).sum(axis=0) <= 2), "each FFT bin feeds at most two mel bands"


def test_unsupported_n_mels_is_refused():
    with pytest.raises(ValueError, match="n_mels"):
        spec.mel_filters(64)


def test_hann_window_is_periodic():
    window = spec.hann_window()
    assert window.shape == (400,) and window[0] == 0.0
    np.testing.assert_allclose(window, np.hanning(401)[:-1], atol=1e-15)


@pytest.mark.parametrize("n", [0, 1, 159, 160, 161, 199, 200, 201, 399, 400, 401, 16000, 48017])
def test_frame_count_is_n_over_hop(n):
    audio = np.random.default_rng(n).standard_normal(n)
    assert spec.reference_log_mel(audio).shape == (80, n // 160)


def test_reference_matches_faster_whisper_feature_extractor():
    audio = (0.1 * np.random.default_rng(0).standard_normal(16000 * 4 + 123)).astype(np.float32)
    theirs = FeatureExtractor(80)(audio, padding=0)
    ours = spec.reference_log_mel(audio)
    assert theirs.shape == ours.shape
    assert np.abs(theirs - ours).max() < 2e-5


def test_normalise_clamps_to_eight_below_the_global_max():
    log_spec = np.array([[2.0, -10.0], [0.0, -3.0]])
    out = spec.normalise(log_spec.copy())
    np.testing.assert_allclose(out, (np.maximum(log_spec, 2.0 - 8.0) + 4.0) / 4.0)


def test_silence_is_the_floor_everywhere():
    features = spec.reference_log_mel(np.zeros(16000))
    np.testing.assert_allclose(features, (-10.0 + 4.0) / 4.0)


@pytest.mark.parametrize("n", [160, 199, 200, 201, 250, 400, 559, 560, 561, 5000])
def test_framing_equals_a_fully_padded_input(n):
    audio = np.random.default_rng(n).standard_normal(n)
    total = spec.n_frames(n)
    want = np.lib.stride_tricks.sliding_window_view(spec.reflect_pad(audio), 400)[::160][:total]
    for start, stop in [(0, total), (0, 1), (total - 1, total), (total // 2, total)]:
        if stop > start:
            np.testing.assert_array_equal(framing.frames(audio, start, stop), want[start:stop])


def test_interior_frames_are_views_not_copies():
    audio = np.arange(16000, dtype=np.float32)
    lo, hi = framing.interior_range(len(audio))
    assert (lo, hi) == (2, 99)
    assert np.shares_memory(framing.segment(audio, lo, hi), audio)
    assert not np.shares_memory(framing.segment(audio, 0, lo), audio)


def test_ranges_cover_everything_once():
    assert framing.ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert framing.ranges(3, 1) == [(0, 1), (1, 2), (2, 3)]
    assert framing.ranges(0, 5) == []
