"""Speech regions (the project's VAD, asr/vad.py) and the sliding windows embedded inside them."""

from __future__ import annotations

import numpy as np

from .encoder import HOP, SAMPLE_RATE

FRAME_S = HOP / SAMPLE_RATE  # 10 ms: the unit of every region and window below


def speech_regions(
    samples: np.ndarray, min_silence_s: float = 0.25, pad_s: float = 0.1, threshold: float = 0.5
) -> list[tuple[int, int]]:
    """Speech regions as half-open (start, end) mel-frame indices (10 ms frames).

    Pauses from `min_silence_s` split regions (a speaker change often sits in a short pause), and the
    regions are padded by only `pad_s`: padding is scored as speech.
    """
    from ..asr.vad import VadOptions, detect_speech

    options = VadOptions(threshold=threshold, min_silence_ms=int(min_silence_s * 1000), speech_pad_ms=int(pad_s * 1000),
                         energy_gate_db=None)
    found = detect_speech(np.asarray(samples, dtype=np.float32), options)
    regions = [(start // HOP, -(-end // HOP)) for start, end in found.regions]
    return [(start, end) for start, end in regions if end > start]


def sliding_windows(
    regions: list[tuple[int, int]], length: int = 150, step: int = 40, min_length: int = 30
) -> list[tuple[int, int]]:
    """Windows of `length` frames every `step` frames inside each region; a shorter region is one window.

    Regions shorter than `min_length` get no window of their own (they take a neighbour's speaker).
    """
    windows: list[tuple[int, int]] = []
    for start, end in regions:
        size = end - start
        if size < min_length:
            continue
        if size <= length:
            windows.append((start, end))
            continue
        starts = list(range(start, end - length + 1, step))
        if starts[-1] != end - length:
            starts.append(end - length)
        windows.extend((s, s + length) for s in starts)
    return windows
