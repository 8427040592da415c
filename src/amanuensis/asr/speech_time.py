"""Times measured from the VAD's speech scores: where in a decoded span the speech actually is.

Whisper's word alignment stretches a word over a pause next to it (a word said after a long pause
starts in the pause; a word before it ends in it), and a segment the model did not close ends where
its chunk ends. The VAD scores every 32 ms frame, so the pause is known: a span is cut back to the
speech inside it. A span with no speech frame at all is left as it is (nothing is invented or lost).
"""

from __future__ import annotations

import numpy as np

from ..constants import SAMPLE_RATE
from .chunking import Chunk
from .vad import FRAME_SAMPLES

FRAME_S = FRAME_SAMPLES / SAMPLE_RATE
VOICED = 0.35
"""A frame scoring at least this is speech (the VAD's off threshold: hysteresis keeps speech above it)."""
EDGE_S = 0.1
"""Time kept either side of the speech frames (the VAD's frames lag and blur onsets a little)."""
DIP_S = 0.3
"""Unvoiced stretches shorter than this inside speech are part of it (stops, soft consonants)."""
SNAP_S = 1.0
"""How far from a word placed in a pause the speech it belongs to may be."""


def voiced_runs(probs: np.ndarray, start: float, end: float) -> list[tuple[float, float]]:
    """Stretches of speech (seconds, original time) between `start` and `end`, short dips bridged."""
    first, last = max(0, int(start / FRAME_S)), min(len(probs), int(np.ceil(end / FRAME_S)))
    if last <= first:
        return []
    voiced = np.asarray(probs[first:last]) >= VOICED
    runs: list[list[float]] = []
    for offset in np.flatnonzero(voiced).tolist():
        t0 = (first + offset) * FRAME_S
        if runs and t0 - runs[-1][1] < DIP_S:
            runs[-1][1] = t0 + FRAME_S
        else:
            runs.append([t0, t0 + FRAME_S])
    return [(a, b) for a, b in runs]


def trim_word(probs: np.ndarray, start: float, end: float) -> tuple[float, float]:
    """A word's span cut to the longest stretch of speech inside it (plus EDGE_S each side). A word
    the alignment put wholly inside a pause goes to the nearer edge of the speech around the pause
    (within SNAP_S), EDGE_S either side of it; with no speech that near it is left as it is."""
    runs = voiced_runs(probs, start, end)
    if not runs:
        before = voiced_runs(probs, max(0.0, start - SNAP_S), start)
        after = voiced_runs(probs, end, end + SNAP_S)
        edges = ([(start - before[-1][1], before[-1][1])] if before else []) + (
            [(after[0][0] - end, after[0][0])] if after else [])
        if not edges:
            return start, end
        edge = min(edges)[1]
        return max(0.0, edge - EDGE_S), edge + EDGE_S
    lo, hi = max(runs, key=lambda r: r[1] - r[0])
    new_start, new_end = max(start, lo - EDGE_S), min(end, hi + EDGE_S)
    return (new_start, new_end) if new_end > new_start else (start, end)


def trim_span(probs: np.ndarray, start: float, end: float) -> tuple[float, float]:
    """A segment's span without the silence before its first and after its last speech (plus EDGE_S)."""
    runs = voiced_runs(probs, start, end)
    if not runs:
        return start, end
    new_start, new_end = max(start, runs[0][0] - EDGE_S), min(end, runs[-1][1] + EDGE_S)
    return (new_start, new_end) if new_end > new_start else (start, end)


def speech_seconds(probs: np.ndarray, chunk: Chunk, start: float, end: float, threshold: float = 0.5) -> float:
    """Seconds of speech frames (score ≥ `threshold`) in chunk time `start`…`end`, over the chunk's pieces."""
    total = 0.0
    position = 0.0
    for piece_start, piece_end in chunk.pieces:
        length = (piece_end - piece_start) / SAMPLE_RATE
        lo, hi = max(start, position), min(end, position + length)
        if hi > lo:
            a = piece_start / SAMPLE_RATE + lo - position
            first, last = int(a / FRAME_S), int((a + hi - lo) / FRAME_S)
            total += float(np.count_nonzero(np.asarray(probs[first:last]) >= threshold)) * FRAME_S
        position += length
    return total


def has_speech_run(probs: np.ndarray, chunk: Chunk, after: float, seconds: float, threshold: float = 0.5) -> bool:
    """True when the chunk holds `seconds` of speech-like frames in a row after chunk time `after`."""
    start = round(chunk.to_original(after) * SAMPLE_RATE) // FRAME_SAMPLES
    end = chunk.pieces[-1][1] // FRAME_SAMPLES
    needed = max(1, round(seconds * SAMPLE_RATE / FRAME_SAMPLES))
    run = 0
    for p in probs[start:end].tolist():
        run = run + 1 if p >= threshold else 0
        if run >= needed:
            return True
    return False
