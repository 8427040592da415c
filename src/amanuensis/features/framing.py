"""Frame ranges without padding the whole input: a view inside, a small reflected copy at the ends."""

from __future__ import annotations

import numpy as np

from . import spec


def reflect_indices(indices: np.ndarray, n: int) -> np.ndarray:
    """Map sample indices outside [0, n) by repeated reflection, as numpy's pad(mode='reflect')."""
    if n == 1:
        return np.zeros_like(indices)
    period = 2 * (n - 1)
    folded = np.mod(indices, period)
    return np.where(folded >= n, period - folded, folded)


def interior_range(n_samples: int) -> tuple[int, int]:
    """Frames [lo, hi) that lie wholly inside the audio (no padding needed)."""
    total = spec.n_frames(n_samples)
    lo = min(total, -(-spec.PAD // spec.HOP_LENGTH))
    hi = max(lo, min(total, (n_samples - spec.PAD) // spec.HOP_LENGTH + 1)) if n_samples >= spec.PAD else lo
    return lo, hi


def segment(audio: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Samples for frames [start, stop): frame t is segment[(t - start) * 160 : ... + 400].

    A view of `audio` when the range is interior, else a reflected copy of just that range.
    """
    first = start * spec.HOP_LENGTH - spec.PAD
    last = (stop - 1) * spec.HOP_LENGTH + spec.PAD
    if first >= 0 and last <= len(audio):
        return audio[first:last]
    return audio[reflect_indices(np.arange(first, last), len(audio))]


def frames(audio: np.ndarray, start: int, stop: int) -> np.ndarray:
    """A read-only (stop - start, 400) strided view of the frames [start, stop)."""
    seg = segment(audio, start, stop)
    return np.lib.stride_tricks.sliding_window_view(seg, spec.N_FFT)[:: spec.HOP_LENGTH]


def ranges(total: int, size: int) -> list[tuple[int, int]]:
    """Split [0, total) into consecutive ranges of at most `size`."""
    size = max(1, int(size))
    return [(start, min(start + size, total)) for start in range(0, total, size)]
