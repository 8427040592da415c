"""Speaker embeddings from Resemblyzer's pretrained GE2E voice encoder.

The weights (``pretrained.pt``) ship inside the ``resemblyzer`` wheel; nothing is downloaded. Only the
weights file is used: the network (3-layer LSTM, 256 units) and its 40-band mel front end are defined
here, so neither librosa nor webrtcvad is imported at run time. torch is imported lazily.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pickle
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..constants import HOP_LENGTH as HOP
from ..constants import N_FFT, SAMPLE_RATE
from ..errors import DiarizationUnavailableError

log = logging.getLogger(__name__)

N_MELS = 40
PARTIAL_FRAMES = 160  # the 1.6 s utterances the encoder was trained on
TARGET_DBFS = -30.0
EMBEDDING_SIZE = 256
INSTALL_HINT = "pip install 'amanuensis[diarize]'"


def default_threads() -> int:
    """Torch threads for the encoder: AMANUENSIS_DIARIZE_THREADS, else 1.

    The LSTM runs 450 small sequential steps per batch; with more threads each step ends in a barrier,
    which costs several times the time when the cores are shared and gains little when they are idle.
    """
    return max(1, int(os.environ.get("AMANUENSIS_DIARIZE_THREADS", "1")))


_lock = threading.Lock()
_encoder: SpeakerEncoder | None = None


def weights_path() -> Path:
    """Path of ``pretrained.pt`` inside the installed resemblyzer package (the package is not imported)."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise DiarizationUnavailableError(f"speaker diarization needs the resemblyzer package: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    if not path.is_file():
        raise DiarizationUnavailableError(f"resemblyzer is installed but {path} is missing: {INSTALL_HINT}")
    return path


def slaney_mel_filters(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """Slaney-scale, Slaney-normalised mel filters over 0..sr/2, as librosa.filters.mel (n_mels, 1 + n_fft/2)."""

    def hz_to_mel(hz: np.ndarray) -> np.ndarray:
        hz = np.asarray(hz, dtype=np.float64)
        linear = hz / (200.0 / 3)
        log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
        return np.where(hz >= 1000.0, log_part, linear)

    def mel_to_hz(mel: np.ndarray) -> np.ndarray:
        linear = mel * (200.0 / 3)
        log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
        return np.where(mel >= 15.0, log_part, linear)

    fft_freqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    return weights


_FILTERS = slaney_mel_filters()
_WINDOW = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann


def mel_frames(samples: np.ndarray, chunk_frames: int = 8192) -> np.ndarray:
    """Power mel spectrogram (not log), centred zero-padded STFT: float32 (len // 160 + 1, 40).

    Computed chunk by chunk from `samples` itself, so no padded copy of a long recording is made."""
    samples = np.asarray(samples, dtype=np.float32)
    half = N_FFT // 2
    n_frames = 1 + len(samples) // HOP
    out = np.empty((n_frames, N_MELS), dtype=np.float32)
    for start in range(0, n_frames, chunk_frames):
        count = min(chunk_frames, n_frames - start)
        low, high = start * HOP - half, (start + count - 1) * HOP + half
        piece = samples[max(0, low) : min(len(samples), high)]
        piece = np.pad(piece, (max(0, -low), max(0, high - len(samples))))
        block = np.lib.stride_tricks.sliding_window_view(piece, N_FFT)[::HOP][:count] * _WINDOW
        power = np.abs(np.fft.rfft(block, axis=1)) ** 2
        out[start : start + count] = power @ _FILTERS.T
    return out


def volume_gain(samples: np.ndarray | float, target_dbfs: float = TARGET_DBFS) -> float:
    """Gain that raises `samples` (or a signal of RMS `samples`) to `target_dbfs` RMS (never lowers it),
    as Resemblyzer's preprocessing."""
    if isinstance(samples, float):
        rms = samples
    else:
        rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
    if rms <= 1e-8:
        return 1.0
    change_db = target_dbfs - 20 * np.log10(rms)
    return float(10 ** (change_db / 20)) if change_db > 0 else 1.0


class SpeakerEncoder:
    """The loaded voice encoder; `embed` maps mel windows to L2-normalised 256-d embeddings."""

    def __init__(self, path: Path | None = None, batch_size: int = 128, threads: int | None = None) -> None:
        try:
            import torch
        except (ImportError, OSError) as exc:
            raise DiarizationUnavailableError(f"speaker diarization needs PyTorch: {INSTALL_HINT}") from exc
        self._torch = torch
        self.batch_size = batch_size
        self.threads = threads or default_threads()
        self.path = path or weights_path()
        self.model = _build_network(torch)
        try:
            checkpoint = torch.load(self.path, map_location="cpu", weights_only=True)
            state = {k: v for k, v in checkpoint["model_state"].items() if not k.startswith("similarity_")}
            self.model.load_state_dict(state)
        except (OSError, RuntimeError, KeyError, AttributeError, ValueError, pickle.UnpicklingError) as exc:
            raise DiarizationUnavailableError(
                f"the speaker encoder weights at {self.path} could not be loaded ({exc}); reinstall: {INSTALL_HINT}"
            ) from exc
        self.model.eval()
        log.info("speaker encoder loaded from %s", self.path)

    def embed(self, mels: np.ndarray) -> np.ndarray:
        """Embed a batch of equal-length mel windows (n, frames, 40) → float32 (n, 256), unit length."""
        torch = self._torch
        results = []
        previous = torch.get_num_threads()  # a per-thread setting: other threads are not affected
        torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                for start in range(0, len(mels), self.batch_size):
                    batch = torch.from_numpy(np.ascontiguousarray(mels[start : start + self.batch_size]))
                    results.append(self.model(batch).numpy())
        finally:
            torch.set_num_threads(previous)
        if not results:
            return np.zeros((0, EMBEDDING_SIZE), dtype=np.float32)
        return np.concatenate(results).astype(np.float32)


def _build_network(torch: Any) -> Any:
    nn = torch.nn

    class VoiceEncoderNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(N_MELS, 256, 3, batch_first=True)
            self.linear = nn.Linear(256, EMBEDDING_SIZE)

        def forward(self, mels: Any) -> Any:
            _, (hidden, _) = self.lstm(mels)
            raw = torch.relu(self.linear(hidden[-1]))
            return raw / torch.linalg.norm(raw, dim=1, keepdim=True).clamp_min(1e-8)

    return VoiceEncoderNet()


def get_encoder() -> SpeakerEncoder:
    """The process-wide encoder, loaded once on first use (thread-safe)."""
    global _encoder
    with _lock:
        if _encoder is None:
            _encoder = SpeakerEncoder()
        return _encoder


def is_available() -> bool:
    """True when torch and resemblyzer's weights are installed (nothing is imported)."""
    try:
        if importlib.util.find_spec("torch") is None:
            return False
        weights_path()
    except (ImportError, ValueError, DiarizationUnavailableError):
        return False
    return True
