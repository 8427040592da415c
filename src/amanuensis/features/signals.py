"""Deterministic mixed test signal for accuracy checks and benchmarks: noise, tones, silence, clipping."""

from __future__ import annotations

import numpy as np

from . import spec

KINDS = ("noise", "quiet_noise", "tone", "bin_tone", "chirp", "silence", "clipped", "impulses", "am_noise", "dc")


def _piece(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / spec.SAMPLE_RATE
    if kind == "noise":
        return rng.standard_normal(n) * rng.uniform(0.01, 0.5)
    if kind == "quiet_noise":
        return rng.standard_normal(n) * 10.0 ** rng.uniform(-6, -3)
    if kind == "tone":
        return rng.uniform(0.05, 0.9) * np.sin(2 * np.pi * rng.uniform(20, 7990) * t + rng.uniform(0, 6.3))
    if kind == "bin_tone":  # exactly on an FFT bin: the sharpest spectrum the window allows
        return 0.7 * np.sin(2 * np.pi * rng.integers(1, 200) * spec.SAMPLE_RATE / spec.N_FFT * t)
    if kind == "chirp":
        f0, f1 = rng.uniform(50, 8000, size=2)
        return 0.5 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * max(t[-1], 1e-3))))
    if kind == "silence":
        return np.zeros(n)
    if kind == "clipped":
        loud = rng.uniform(2, 20) * (np.sin(2 * np.pi * rng.uniform(50, 2000) * t) + 0.3 * rng.standard_normal(n))
        return np.clip(loud, -1.0, 1.0)
    if kind == "impulses":
        out = np.zeros(n)
        out[rng.integers(0, n, size=max(1, n // 4000))] = rng.uniform(-1, 1, size=max(1, n // 4000))
        return out
    if kind == "am_noise":  # a speech-like envelope over noise
        return rng.standard_normal(n) * 0.2 * (1 + np.sin(2 * np.pi * 4 * t)) ** 2
    if kind == "dc":
        return np.full(n, rng.uniform(-0.5, 0.5)) + 1e-4 * rng.standard_normal(n)
    raise ValueError(kind)


def mixed_signal(seconds: float, seed: int = 0, piece_seconds: tuple[float, float] = (0.3, 8.0)) -> np.ndarray:
    """float32 16 kHz audio of `seconds`: pieces of every kind in random order and length."""
    rng = np.random.default_rng(seed)
    total = int(seconds * spec.SAMPLE_RATE)
    out = np.empty(total, dtype=np.float32)
    position, index = 0, 0
    while position < total:
        n = min(total - position, int(rng.uniform(*piece_seconds) * spec.SAMPLE_RATE))
        kind = KINDS[index % len(KINDS)] if index < len(KINDS) else KINDS[rng.integers(len(KINDS))]
        out[position : position + n] = _piece(kind, n, rng)
        position, index = position + n, index + 1
    return out
