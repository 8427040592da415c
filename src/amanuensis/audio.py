"""Decode anything PyAV/FFmpeg reads into float32 mono (or per-channel) samples at 16 kHz."""

from __future__ import annotations

import io
import logging
import os
import re
from pathlib import Path
from typing import BinaryIO, Union

import av
import numpy as np

from .constants import SAMPLE_RATE
from .errors import AudioError

log = logging.getLogger(__name__)

AudioSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, np.ndarray]  # noqa: UP007

# A decoded stream shorter than its container declares by more than this is called truncated.
_TRUNCATION_TOLERANCE_S = 0.5
_TRUNCATION_TOLERANCE_RATIO = 0.05


def _open(source: AudioSource) -> av.container.InputContainer:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise AudioError("the audio is empty (0 bytes)")
        source = io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise AudioError(f"no such file: {path}")
        if path.is_dir():
            raise AudioError(f"{path} is a directory, not an audio file")
        if path.stat().st_size == 0:
            raise AudioError(f"{path.name} is empty (0 bytes)")
        source = str(path)
    try:
        return av.open(source, mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise AudioError(f"not a readable audio or video file ({_reason(exc)})") from exc


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", text.splitlines()[0])
    return re.sub(r":\s*'[^']*'$", "", text)[:200]


_PREALLOCATE_MAX_S = 4 * 3600
"""A header may claim any length: room for more than this is only made as the samples arrive."""


class NonFiniteAudioError(AudioError):
    """The samples hold NaN or ±Inf: the file is corrupt, and Whisper would turn it into made-up text."""

    def __init__(self, count: int, first_s: float) -> None:
        super().__init__(f"the audio holds {count} non-finite samples (NaN or ±Inf), the first at {first_s:.2f} s; "
                         "the file is corrupt: repair or re-export it")


def non_finite(block: np.ndarray) -> tuple[int, int] | None:
    """(how many samples are NaN or ±Inf, the first such sample's index) in a (channels, n) block, or None."""
    bad = ~np.isfinite(block)
    if not bad.any():
        return None
    return int(bad.sum()), int(np.nonzero(bad.any(axis=0))[0][0])


def probe_seconds(path: str | os.PathLike) -> float:
    """Open a file as audio and return the duration it declares (0.0 when it declares none); raises
    AudioError when it is no readable container or holds no audio stream. Nothing is decoded."""
    with _open(path) as container:
        streams = container.streams.audio
        if not streams:
            raise AudioError("the file holds no audio stream")
        return _declared_seconds(container, streams[0])


def _declared_seconds(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def decode_audio(
    source: AudioSource,
    sampling_rate: int = SAMPLE_RATE,
    split_channels: bool = False,
    check_truncation: bool = True,
) -> np.ndarray:
    """Decode `source` (path, bytes, file object or array) to float32 at `sampling_rate`.

    Returns shape (n,) mixed to mono, or (channels, n) with `split_channels`. Raises AudioError for
    empty, non-audio, truncated or silent-length input.
    """
    if isinstance(source, np.ndarray):
        return _from_array(source, split_channels)
    with _open(source) as container:
        streams = container.streams.audio
        if not streams:
            raise AudioError("the file holds no audio stream")
        stream = streams[0]
        stream.thread_type = "AUTO"
        channels = stream.codec_context.channels or 1
        layout = "mono" if not split_channels else ("stereo" if channels == 2 else stream.layout.name)
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=sampling_rate)
        declared = _declared_seconds(container, stream)
        buffer = _SampleBuffer(round(min(declared, _PREALLOCATE_MAX_S) * sampling_rate) + sampling_rate)
        try:
            for frame in container.decode(stream):
                frame.pts = None
                for out in resampler.resample(frame):
                    buffer.append(out.to_ndarray())
            for out in resampler.resample(None):
                buffer.append(out.to_ndarray())
        except (av.error.FFmpegError, ValueError) as exc:
            if not buffer.size:
                raise AudioError(f"the audio could not be decoded ({_reason(exc)})") from exc
            raise AudioError(f"the audio is corrupt or truncated ({_reason(exc)})") from exc
    samples = buffer.samples()
    if samples.shape[1] == 0:
        raise AudioError("the file holds no decodable audio (zero length)")
    if buffer.non_finite:
        raise NonFiniteAudioError(buffer.non_finite, buffer.first_non_finite / sampling_rate)
    decoded = samples.shape[1] / sampling_rate
    if check_truncation and declared > 0:
        missing = declared - decoded
        if missing > max(_TRUNCATION_TOLERANCE_S, _TRUNCATION_TOLERANCE_RATIO * declared):
            raise AudioError(
                f"the audio is truncated: its header declares {declared:.2f} s but only "
                f"{decoded:.2f} s could be decoded"
            )
    if split_channels:
        return np.ascontiguousarray(samples)
    return np.ascontiguousarray(samples[0])


class _SampleBuffer:
    """Decoded samples written into one array sized from the declared duration, so that a long file
    is held once rather than as a list of frames plus their concatenation; grows by half when the
    declaration is missing or short."""

    def __init__(self, expected: int) -> None:
        self._expected = expected
        self._data = np.empty((1, 0), dtype=np.float32)
        self.size = 0
        self.non_finite = 0
        self.first_non_finite = 0

    def append(self, piece: np.ndarray) -> None:
        """Add a (channels, n) block of samples, counting NaN and ±Inf ones."""
        n = piece.shape[1]
        found = non_finite(piece)
        if found:
            if not self.non_finite:
                self.first_non_finite = self.size + found[1]
            self.non_finite += found[0]
        if self._data.shape[1] == 0:
            self._data = np.empty((piece.shape[0], max(self._expected, n)), dtype=np.float32)
        if self.size + n > self._data.shape[1]:
            grown = np.empty((self._data.shape[0], max(self.size + n, self._data.shape[1] * 3 // 2)), np.float32)
            grown[:, : self.size] = self._data[:, : self.size]
            self._data = grown
        self._data[:, self.size : self.size + n] = piece
        self.size += n

    def samples(self) -> np.ndarray:
        """The samples so far: a view when the array is nearly full, else a tight copy."""
        if self.size * 5 >= self._data.shape[1] * 4:
            return self._data[:, : self.size]
        return self._data[:, : self.size].copy()


def _from_array(array: np.ndarray, split_channels: bool) -> np.ndarray:
    if array.size == 0:
        raise AudioError("the audio is empty (0 samples)")
    array = np.asarray(array, dtype=np.float32)
    found = non_finite(array.reshape(-1, array.shape[-1]))
    if found:
        raise NonFiniteAudioError(found[0], found[1] / SAMPLE_RATE)
    if array.ndim == 1:
        return array[None, :] if split_channels else array
    if array.ndim == 2:
        return array if split_channels else array.mean(axis=0)
    raise AudioError(f"audio arrays must be 1-D or (channels, samples), got shape {array.shape}")


def duration_seconds(samples: np.ndarray, sampling_rate: int = SAMPLE_RATE) -> float:
    """Duration of decoded samples (last axis) in seconds."""
    return samples.shape[-1] / sampling_rate
