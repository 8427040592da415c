"""The recognizer's resources: the CTranslate2 Whisper model, its tokenizer and the log-mel front end.

Every mode and door decodes through one `Recognizer`: the engine (`asr.engine`) encodes and generates
on its model, the features come from its front-end chain (called directly, in one batched call per
group of chunks) and the prompts and texts from its tokenizer. faster-whisper supplies only the
tokenizer helper (`faster_whisper.tokenizer.Tokenizer`, Whisper's special tokens and word splitting
over the model's `tokenizer.json`); its `WhisperModel` is not used.
"""

from __future__ import annotations

import threading
from pathlib import Path

import ctranslate2
import numpy as np

from ..constants import HOP_LENGTH, N_FRAMES
from ..errors import ModelError

MAX_LENGTH = 448
"""Whisper's text context: prompt and generated tokens together."""
FEATURE_PADDING = 160
"""Samples of silence after a window before the log-mel transform (Whisper's N // 160 + 1 frames)."""


class Recognizer:
    """A loaded Whisper checkpoint with our front end; the engine and the lanes decode on it."""

    def __init__(
        self,
        path: str,
        *,
        device: str,
        compute_type: str,
        worker_threads: int,
        decoders: int,
        frontend: object,
    ) -> None:
        """`worker_threads` CPU threads in each of `decoders` CTranslate2 workers (`pipeline.cpu_layout`)."""
        tokenizer_file = Path(path) / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise ModelError(f"model directory {path} has no tokenizer.json")
        try:
            self.model = ctranslate2.models.Whisper(
                path, device=device, compute_type=compute_type, intra_threads=worker_threads, inter_threads=decoders
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"model {path} could not be loaded: {exc}") from exc
        import tokenizers

        self.hf_tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer_file))
        self.frontend = frontend
        self.max_length = MAX_LENGTH
        self._tokenizers: dict[tuple[str, str | None], object] = {}
        self._lock = threading.Lock()

    @property
    def multilingual(self) -> bool:
        """True for multilingual checkpoints."""
        return bool(self.model.is_multilingual)

    @property
    def n_mels(self) -> int:
        """Mel bands the model's encoder takes (80, or 128 for large-v3)."""
        return int(self.model.n_mels)

    def tokenizer(self, task: str = "transcribe", language: str | None = None) -> object:
        """A cached faster-whisper Tokenizer for (task, language); English-only models ignore the language."""
        from faster_whisper.tokenizer import Tokenizer

        key = (task, language if self.multilingual else None)
        with self._lock:
            if key not in self._tokenizers:
                self._tokenizers[key] = Tokenizer(self.hf_tokenizer, self.multilingual, task=task,
                                                  language=key[1] or "en")
            return self._tokenizers[key]

    def use_frontend(self, frontend: object) -> None:
        """Compute features with `frontend` (a FrontendChain or anything with its `compute_batch`) from now on."""
        self.frontend = frontend

    def features(self, audios: list[np.ndarray], frames: int = N_FRAMES) -> np.ndarray:
        """Log-mel features (B, n_mels, frames) of chunks zero-padded to `frames`, in one front-end call."""
        return window_features(self.frontend, audios, self.n_mels, frames)


def window_features(frontend: object, audios: list[np.ndarray], n_mels: int, frames: int = N_FRAMES) -> np.ndarray:
    """Features (B, n_mels, frames) of chunks each zero-padded to `frames` × 160 samples (plus Whisper's
    160 samples of padding), computed by `frontend.compute_batch` in one call. A window's columns equal
    the first `frames` columns of the 30 s window's, since the padding is silence."""
    samples = frames * HOP_LENGTH
    batch = np.zeros((len(audios), samples + FEATURE_PADDING), dtype=np.float32)
    for row, audio in zip(batch, audios, strict=True):
        piece = np.asarray(audio, dtype=np.float32)[:samples]
        row[: len(piece)] = piece
    features = frontend.compute_batch(list(batch), n_mels)
    return np.ascontiguousarray(np.stack([f[:, :frames] for f in features]))
