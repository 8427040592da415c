"""Diarization error rate (NIST definition, no collar), frame-based at 10 ms, optimal speaker mapping."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

Turns = list[tuple[float, float, str]]


def activity(turns: Turns, n_frames: int, step: float) -> tuple[list[str], np.ndarray]:
    """Speakers and their activity matrix (n_speakers, n_frames) of booleans."""
    speakers = sorted({speaker for _, _, speaker in turns})
    active = np.zeros((len(speakers), n_frames), dtype=bool)
    for start, end, speaker in turns:
        active[speakers.index(speaker), int(round(start / step)) : int(round(end / step))] = True
    return speakers, active


def diarization_error_rate(reference: Turns, hypothesis: Turns, step: float = 0.01) -> float:
    """(missed + false alarm + confusion) / reference speech, under the best one-to-one speaker mapping."""
    end = max([e for _, e, _ in reference + hypothesis], default=0.0)
    n_frames = int(round(end / step)) + 1
    _, ref = activity(reference, n_frames, step)
    _, hyp = activity(hypothesis, n_frames, step)
    total = ref.sum()
    if total == 0:
        return 0.0 if hyp.sum() == 0 else 1.0
    overlap = ref.astype(np.int64) @ hyp.T.astype(np.int64)  # frames each (ref, hyp) pair share
    rows, cols = linear_sum_assignment(-overlap) if overlap.size else ([], [])
    correct = overlap[rows, cols].sum() if len(rows) else 0
    errors = np.maximum(ref.sum(axis=0), hyp.sum(axis=0)).sum() - correct
    return float(errors / total)
