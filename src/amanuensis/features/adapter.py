"""A drop-in for faster-whisper's FeatureExtractor that computes features with a FrontendChain.

The recognizer calls the chain itself (`asr.recognizer.window_features`); this adapter lets faster-whisper's
own decoder run on our front end, to compare the two decoders on the same features."""

from __future__ import annotations

import numpy as np

from . import spec


class FeatureExtractorAdapter:
    """Same attributes and call as faster_whisper.feature_extractor.FeatureExtractor.

    `__call__` pads `padding` zeros at the end, as faster-whisper does (N // 160 + 1 frames for
    padding=160), and normalises over the whole waveform it is given.
    """

    def __init__(self, frontend: object, original_fe: object | None = None) -> None:
        self.frontend = frontend
        self.original = original_fe
        self.sampling_rate = getattr(original_fe, "sampling_rate", spec.SAMPLE_RATE)
        self.hop_length = getattr(original_fe, "hop_length", spec.HOP_LENGTH)
        self.n_fft = getattr(original_fe, "n_fft", spec.N_FFT)
        self.chunk_length = getattr(original_fe, "chunk_length", spec.CHUNK_LENGTH)
        self.n_samples = self.chunk_length * self.sampling_rate
        self.nb_max_frames = self.n_samples // self.hop_length
        self.time_per_frame = self.hop_length / self.sampling_rate
        filters = getattr(original_fe, "mel_filters", None)
        self.n_mels = int(filters.shape[0]) if filters is not None else 80
        self.mel_filters = filters if filters is not None else spec.mel_filters(self.n_mels).astype(np.float32)
        if (self.sampling_rate, self.hop_length, self.n_fft) != (
            spec.SAMPLE_RATE,
            spec.HOP_LENGTH,
            spec.N_FFT,
        ):
            raise ValueError("the front end implements Whisper's 16 kHz, n_fft 400, hop 160 features only")

    @property
    def feature_size(self) -> int:
        """Number of mel bands (faster-whisper's name for n_mels)."""
        return self.n_mels

    def __call__(self, waveform: np.ndarray, padding: int = 160, chunk_length: int | None = None) -> np.ndarray:
        """Log-mel features float32 (n_mels, (len(waveform) + padding) // 160)."""
        if chunk_length is not None:
            self.n_samples = chunk_length * self.sampling_rate
            self.nb_max_frames = self.n_samples // self.hop_length
        waveform = np.asarray(waveform, dtype=np.float32)
        if padding:
            waveform = np.pad(waveform, [(0, 0)] * (waveform.ndim - 1) + [(0, padding)])
        if waveform.ndim == 1:
            return self.frontend.compute(waveform, self.n_mels)
        rows = list(waveform.reshape(-1, waveform.shape[-1]))
        batch = self.frontend.compute_batch(rows, self.n_mels)
        return np.stack(batch).reshape(*waveform.shape[:-1], self.n_mels, -1)

    def windows(self, audios: list[np.ndarray], frames: int | None = None) -> np.ndarray:
        """Features (B, n_mels, frames) of chunks zero-padded to `frames` (default nb_max_frames, the
        whole chunk_length window), in one batched front-end call.

        Equal to stacking `self(zero_padded_chunk)[:, :frames]` for each chunk.
        """
        from ..asr.recognizer import window_features

        return window_features(self.frontend, audios, self.n_mels, self.nb_max_frames if frames is None else frames)
