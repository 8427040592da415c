"""The reference backend: the float64 numpy definition, the last resort and the yardstick."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import spec
from .base import BaseBackend


class ReferenceBackend(BaseBackend):
    """Plain float64 numpy, chunked; slow but has nothing to fail but memory."""

    name = "reference"

    def __init__(self, device: str = "cpu", batch_frames: int | None = None) -> None:
        if device != "cpu":
            raise ValueError("the reference backend runs on the cpu only")
        self.device = "cpu"
        self.batch_frames = batch_frames

    def log10_mel(self, audio: np.ndarray, n_mels: int) -> np.ndarray:
        """float64 computation, returned as float64 (normalised before the cast to float32)."""
        return spec.reference_log10_mel(audio, n_mels, chunk_frames=self.batch_frames or 8192)

    def compute(self, audio_batch: Sequence[np.ndarray], n_mels: int = 80) -> list[np.ndarray]:
        """Normalise in float64, then cast: the most exact features this package can make."""
        spec.check_n_mels(n_mels)
        out = []
        for audio in audio_batch:
            array = np.asarray(audio, dtype=np.float64)
            if array.ndim != 1:
                raise ValueError(f"audio must be one-dimensional, not shape {array.shape}")
            raw = self.log10_mel(array, n_mels)
            out.append(spec.normalise(raw, out=raw).astype(np.float32))
        return out
