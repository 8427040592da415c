"""Kaldi-style log mel filterbank features (80 bands), the input of the CAM++ speaker encoder.

Frames of 25 ms every 10 ms without edge padding ("snip edges"), DC removed, pre-emphasis 0.97, Povey
window, 512-point power spectrum, triangular filters on Kaldi's mel scale from 20 Hz to Nyquist, natural
log floored at float32 epsilon: the features the encoder was trained on (Kaldi's `compute-fbank-feats`
defaults, no dither).
"""

from __future__ import annotations

import numpy as np

from ..constants import SAMPLE_RATE

FRAME_LENGTH = 400  # 25 ms
FRAME_SHIFT = 160  # 10 ms, the same hop as the rest of diarization
N_FFT = 512
N_BANDS = 80
LOW_HZ = 20.0
PREEMPHASIS = 0.97
_EPSILON = float(np.finfo(np.float32).eps)


def _mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def kaldi_mel_filters(n_bands: int = N_BANDS, sr: int = SAMPLE_RATE, n_fft: int = N_FFT) -> np.ndarray:
    """Triangular filters (n_bands, n_fft // 2 + 1), flat in Kaldi's mel scale; the Nyquist bin gets none."""
    edges = np.linspace(_mel(LOW_HZ), _mel(sr / 2), n_bands + 2)
    bins = _mel(np.arange(n_fft // 2) * sr / n_fft)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - left) / (centre - left)
    falling = (right - bins) / (right - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return np.pad(weights, ((0, 0), (0, 1))).astype(np.float32)


_FILTERS = kaldi_mel_filters()
_WINDOW = ((0.5 - 0.5 * np.cos(2 * np.pi * np.arange(FRAME_LENGTH) / (FRAME_LENGTH - 1))) ** 0.85).astype(np.float32)


def fbank(samples: np.ndarray, chunk_frames: int = 8192) -> np.ndarray:
    """Log filterbank energies float32 (n_frames, 80) of 16 kHz mono `samples` in [-1, 1].

    Frame i covers samples [160 i, 160 i + 400); computed chunk by chunk, so a long recording is not
    copied whole. Fewer than 400 samples give no frame."""
    samples = np.asarray(samples, dtype=np.float32)
    n_frames = max(0, 1 + (len(samples) - FRAME_LENGTH) // FRAME_SHIFT)
    out = np.empty((n_frames, N_BANDS), dtype=np.float32)
    for start in range(0, n_frames, chunk_frames):
        count = min(chunk_frames, n_frames - start)
        piece = samples[start * FRAME_SHIFT : (start + count - 1) * FRAME_SHIFT + FRAME_LENGTH]
        frames = np.lib.stride_tricks.sliding_window_view(piece, FRAME_LENGTH)[::FRAME_SHIFT][:count]
        frames = frames - frames.mean(axis=1, keepdims=True)
        emphasised = np.concatenate(
            [frames[:, :1] * (1 - PREEMPHASIS), frames[:, 1:] - PREEMPHASIS * frames[:, :-1]], axis=1
        )
        power = np.abs(np.fft.rfft(emphasised * _WINDOW, n=N_FFT, axis=1)) ** 2
        out[start : start + count] = np.log(np.maximum(power.astype(np.float32) @ _FILTERS.T, _EPSILON))
    return out
