"""The torch backend: torch.stft on any torch device (cpu, cuda, rocm, mps, xpu); an optional extra."""

from __future__ import annotations

import logging

import numpy as np

from .. import framing, spec
from .base import BaseBackend

log = logging.getLogger(__name__)

DEFAULT_BATCH_FRAMES = {"cpu": 8192}
ACCELERATOR_BATCH_FRAMES = 1 << 17


def _check_device(torch, device: str) -> None:
    kind = torch.device(device).type
    available = {
        "cpu": lambda: True,
        "cuda": torch.cuda.is_available,  # ROCm builds of torch present their GPUs as cuda
        "mps": lambda: getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
        "xpu": lambda: getattr(torch, "xpu", None) is not None and torch.xpu.is_available(),
    }
    if kind not in available or not available[kind]():
        raise RuntimeError(f"torch device {device!r} is not available")


class TorchBackend(BaseBackend):
    """Framing in numpy (no full-length pad), STFT + power + mel + log10 with torch on `device`."""

    name = "torch"

    def __init__(self, device: str = "cpu", batch_frames: int | None = None) -> None:
        import torch

        _check_device(torch, device)
        self.torch = torch
        self.device = device
        self.batch_frames = batch_frames
        self._device = torch.device(device)
        self._window = torch.from_numpy(spec.hann_window().astype(np.float32)).to(self._device)
        self._filters: dict[int, object] = {}

    def _chunk(self, total: int) -> int:
        default = DEFAULT_BATCH_FRAMES.get(self._device.type, ACCELERATOR_BATCH_FRAMES)
        return self.batch_frames or min(total, default) or 1

    def _mel(self, n_mels: int):
        if n_mels not in self._filters:
            filters = spec.mel_filters(n_mels).astype(np.float32)
            self._filters[n_mels] = self.torch.from_numpy(filters).to(self._device)
        return self._filters[n_mels]

    def _run(self, segments: np.ndarray, n_mels: int) -> np.ndarray:
        """segments (B, L) -> log10 mel (B, n_mels, (L - 400) // 160 + 1) on the device."""
        torch = self.torch
        with torch.inference_mode():
            samples = torch.from_numpy(segments).to(self._device, non_blocking=True)
            stft = torch.stft(
                samples, spec.N_FFT, spec.HOP_LENGTH, window=self._window, center=False, return_complex=True
            )
            power = stft.real.square() + stft.imag.square()
            mel = torch.matmul(self._mel(n_mels), power)
            return torch.log10(torch.clamp(mel, min=spec.LOG_FLOOR)).cpu().numpy()

    def log10_mel(self, audio: np.ndarray, n_mels: int) -> np.ndarray:
        """Un-normalised float32 log10 mel, `batch_frames` frames per device call."""
        total = spec.n_frames(len(audio))
        out = np.empty((n_mels, total), dtype=np.float32)
        for start, stop in framing.ranges(total, self._chunk(total)):
            segment = np.ascontiguousarray(framing.segment(audio, start, stop))[None, :]
            out[:, start:stop] = self._run(segment, n_mels)[0]
        return out

    def log10_mel_batch(self, audio_batch: list[np.ndarray], n_mels: int) -> list[np.ndarray]:
        """Equal-length arrays (whole 30 s windows) go to the device together, as one batch."""
        lengths = {len(a) for a in audio_batch}
        total = spec.n_frames(len(audio_batch[0])) if audio_batch else 0
        if len(audio_batch) < 2 or len(lengths) != 1 or total == 0 or total > self._chunk(total):
            return super().log10_mel_batch(audio_batch, n_mels)
        segments = np.stack([framing.segment(a, 0, total) for a in audio_batch])
        return list(self._run(segments, n_mels))
