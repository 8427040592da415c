"""The backend protocol and the shared parts every backend reuses (validation, normalising, probing)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from ...errors import BackendError
from .. import spec

log = logging.getLogger(__name__)

PROBE_TOLERANCE = 1e-4  # the contract; also rejects e.g. a GPU that computes in TF32


@runtime_checkable
class Backend(Protocol):
    """A log-mel front end: `compute` a batch of 1-D float32 arrays into normalised features."""

    name: str
    device: str
    batch_frames: int | None

    def compute(self, audio_batch: Sequence[np.ndarray], n_mels: int = 80) -> list[np.ndarray]:
        """Features (n_mels, len(a) // 160) float32 for each `a`, each normalised over itself."""
        ...

    def health(self) -> None:
        """Raise BackendError unless the backend computes a small probe correctly."""
        ...


def as_audio(audio: np.ndarray) -> np.ndarray:
    """A C-contiguous float32 1-D view or copy of `audio`; ValueError for anything else."""
    array = np.ascontiguousarray(audio, dtype=np.float32)
    if array.ndim != 1:
        raise ValueError(f"audio must be one-dimensional, not shape {array.shape}")
    return array


def probe_signal() -> np.ndarray:
    """A short deterministic probe: a chirp-like tone over noise, 0.5 s, with a silent tail."""
    rng = np.random.default_rng(1234)
    t = np.arange(spec.SAMPLE_RATE // 2) / spec.SAMPLE_RATE
    signal = 0.5 * np.sin(2 * np.pi * (300 + 2000 * t) * t) + 0.01 * rng.standard_normal(t.size)
    signal[-1600:] = 0.0
    return signal.astype(np.float32)


class BaseBackend:
    """Shared behaviour: subclasses implement `log10_mel` (un-normalised log10 mel, float32)."""

    name = "base"
    device = "cpu"
    batch_frames: int | None = None

    def log10_mel(self, audio: np.ndarray, n_mels: int) -> np.ndarray:
        """log10(max(mel, 1e-10)) float32 (n_mels, N // 160) for one contiguous float32 array."""
        raise NotImplementedError

    def log10_mel_batch(self, audio_batch: list[np.ndarray], n_mels: int) -> list[np.ndarray]:
        """Un-normalised features for several arrays; backends with a batched kernel override this."""
        return [self.log10_mel(audio, n_mels) for audio in audio_batch]

    def normalise(self, log_spec: np.ndarray) -> np.ndarray:
        """Clamp to (max - 8) and scale, in place; the max is over the whole array."""
        return spec.normalise(log_spec, out=log_spec)

    def compute(self, audio_batch: Sequence[np.ndarray], n_mels: int = 80) -> list[np.ndarray]:
        """Normalised float32 features for each array of `audio_batch`, each over its own max."""
        spec.check_n_mels(n_mels)
        arrays = [as_audio(audio) for audio in audio_batch]
        raw = self.log10_mel_batch(arrays, n_mels)
        return [self.normalise(np.asarray(r, dtype=np.float32)) for r in raw]

    def health(self) -> None:
        """Compute the probe and compare with the float64 reference; BackendError if it fails."""
        probe = probe_signal()
        try:
            got = self.compute([probe], 80)[0]
        except BackendError:
            raise
        except Exception as exc:  # any failure of a backend's library is a backend failure
            raise BackendError(f"{self.describe()} failed its probe: {exc}") from exc
        want = spec.reference_log_mel(probe, 80)
        if got.shape != want.shape or not np.all(np.isfinite(got)):
            raise BackendError(f"{self.describe()} probe gave shape {got.shape}, wanted {want.shape}")
        error = float(np.abs(got - want).max())
        if error > PROBE_TOLERANCE:
            raise BackendError(f"{self.describe()} probe error {error:.2e} exceeds {PROBE_TOLERANCE}")

    def describe(self) -> str:
        """name:device@batch_frames, as configured."""
        suffix = f"@{self.batch_frames}" if self.batch_frames else ""
        return f"{self.name}:{self.device}{suffix}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"
