"""Whisper's log-mel contract: constants, the Slaney mel filterbank and a float64 reference.

16 kHz mono; n_fft 400; hop 160; periodic Hann window; centred STFT with reflect padding;
power |X|^2; the last frame dropped (N samples -> N // 160 frames); Slaney mel filters over
0-8000 Hz; log10(max(mel, 1e-10)); clamp to (max - 8); (x + 4) / 4. The max is taken over
the whole array the caller passes.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..constants import CHUNK_SAMPLES, CHUNK_SECONDS, HOP_LENGTH, N_FFT, SAMPLE_RATE

N_BINS = N_FFT // 2 + 1
PAD = N_FFT // 2
CHUNK_LENGTH = CHUNK_SECONDS
N_SAMPLES = CHUNK_SAMPLES
SUPPORTED_N_MELS = (80, 128)
LOG_FLOOR = 1e-10
DYNAMIC_RANGE = 8.0


def n_frames(n_samples: int) -> int:
    """Frames the contract gives for `n_samples` samples (the last STFT frame is dropped)."""
    return n_samples // HOP_LENGTH


def check_n_mels(n_mels: int) -> int:
    """Return `n_mels` if Whisper uses it (80, or 128 for large-v3); raise ValueError otherwise."""
    if n_mels not in SUPPORTED_N_MELS:
        raise ValueError(f"n_mels must be one of {SUPPORTED_N_MELS}, not {n_mels!r}")
    return int(n_mels)


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney mel scale (librosa htk=False): linear below 1 kHz, logarithmic above."""
    freq = np.asarray(freq, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = freq / f_sp
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(freq >= min_log_hz, min_log_mel + np.log(np.maximum(freq, 1e-12) / min_log_hz) / logstep, mels)


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    freqs = f_sp * mels
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), freqs)


@lru_cache(maxsize=4)
def mel_filters(n_mels: int = 80) -> np.ndarray:
    """Slaney-normalised mel filterbank, float64 (n_mels, 201); equals librosa.filters.mel(16000, 400)."""
    check_n_mels(n_mels)
    fftfreqs = np.fft.rfftfreq(N_FFT, d=1.0 / SAMPLE_RATE)
    mel_points = np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), n_mels + 2)
    hz = _mel_to_hz(mel_points)
    fdiff = np.diff(hz)
    ramps = hz[:, None] - fftfreqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (hz[2 : n_mels + 2] - hz[:n_mels]))[:, None]
    weights.setflags(write=False)
    return weights


@lru_cache(maxsize=1)
def hann_window() -> np.ndarray:
    """Periodic Hann window of N_FFT samples, float64 (torch.hann_window(400))."""
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)
    window.setflags(write=False)
    return window


def reflect_pad(audio: np.ndarray) -> np.ndarray:
    """Centre padding: PAD samples reflected at each end (numpy 'reflect', repeated if needed)."""
    return np.pad(audio, (PAD, PAD), mode="reflect")


def normalise(log_spec: np.ndarray, out: np.ndarray | None = None, top: float | None = None) -> np.ndarray:
    """Clamp log10 mel to (max - 8), then (x + 4) / 4; the max is over the whole array unless `top`
    gives it; in place when `out` is `log_spec`."""
    if log_spec.size == 0:
        return log_spec if out is None else out
    top = float(log_spec.max()) if top is None else top
    out = np.maximum(log_spec, top - DYNAMIC_RANGE, out=out)
    out += 4.0
    out /= 4.0
    return out


def reference_log10_mel(audio: np.ndarray, n_mels: int = 80, chunk_frames: int = 8192) -> np.ndarray:
    """Un-normalised log10(max(mel, 1e-10)) in float64, shape (n_mels, N // 160), computed in chunks."""
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 1:
        raise ValueError(f"audio must be one-dimensional, not shape {audio.shape}")
    frames_total = n_frames(len(audio))
    out = np.empty((check_n_mels(n_mels), frames_total), dtype=np.float64)
    if frames_total == 0:
        return out
    padded = reflect_pad(audio)
    filters, window = mel_filters(n_mels), hann_window()
    view = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH]
    for start in range(0, frames_total, chunk_frames):
        stop = min(start + chunk_frames, frames_total)
        spectrum = np.fft.rfft(view[start:stop] * window, axis=-1)
        power = spectrum.real**2 + spectrum.imag**2
        out[:, start:stop] = np.log10(np.maximum(filters @ power.T, LOG_FLOOR))
    return out


def reference_log_mel(audio: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """Whisper log-mel features in float64, shape (n_mels, N // 160); the max is over all of `audio`."""
    return normalise(reference_log10_mel(audio, n_mels), out=None)
