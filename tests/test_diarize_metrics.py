"""The test helper that scores diarization (tests/diar_metrics.py) on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from .diar_metrics import diarization_error_rate

REF = [(0.0, 4.0, "a"), (5.0, 9.0, "b"), (9.0, 10.0, "a")]


def test_perfect_with_other_labels_is_zero() -> None:
    hyp = [(0.0, 4.0, "S1"), (5.0, 9.0, "S0"), (9.0, 10.0, "S1")]
    assert diarization_error_rate(REF, hyp) == 0.0


def test_known_errors() -> None:
    # 9 s of reference speech. Missed 1 s (3-4), false alarm 0.5 s (4-4.5), confusion 1 s (9-10).
    hyp = [(0.0, 3.0, "x"), (4.0, 4.5, "x"), (5.0, 10.0, "y")]
    assert diarization_error_rate(REF, hyp) == pytest.approx((1.0 + 0.5 + 1.0) / 9.0)
    # Everything given to one speaker: 'b' (4 s) is confused.
    assert diarization_error_rate(REF, [(0.0, 10.0, "x")]) == pytest.approx((1.0 + 4.0) / 9.0)
    assert diarization_error_rate(REF, []) == pytest.approx(1.0)


def test_overlapping_reference_speech_counts_twice() -> None:
    ref = [(0.0, 4.0, "a"), (1.0, 3.0, "b")]
    assert diarization_error_rate(ref, [(0.0, 4.0, "x")]) == pytest.approx(2.0 / 6.0)
    assert diarization_error_rate(ref, [(0.0, 4.0, "x"), (1.0, 3.0, "y")]) == 0.0


def test_agrees_with_pyannote_metrics() -> None:
    metrics = pytest.importorskip("pyannote.metrics.diarization")
    core = pytest.importorskip("pyannote.core")
    rng = np.random.default_rng(0)

    def annotation(turns: list[tuple[float, float, str]]) -> object:
        result = core.Annotation()
        for index, (start, end, speaker) in enumerate(turns):
            result[core.Segment(start, end), index] = speaker
        return result

    for _ in range(20):
        ref, hyp = [], []
        for turns, names in ((ref, "abc"), (hyp, "xyzw")):
            t = 0.0
            while t < 30:
                length = round(float(rng.uniform(0.5, 4.0)), 2)
                turns.append((t, round(t + length, 2), str(rng.choice(list(names)))))
                t = round(t + length + float(rng.choice([0.0, 0.3, 1.0])), 2)
        expected = metrics.DiarizationErrorRate()(
            annotation(ref), annotation(hyp), uem=core.Timeline([core.Segment(0, 40)])
        )
        assert diarization_error_rate(ref, hyp) == pytest.approx(expected, abs=2e-3)
