"""The cpu backend: float32 in and out, chunked so the working set stays in cache, every core used.

The compiled kernel (`amanuensis.features._melkernel`) does framing, FFT, power, the non-zero part of
the mel filterbank and log10 in one pass per block of frames, with frames in the SIMD lanes; without it
a NumPy/SciPy path computes the same thing chunk by chunk. Neither pads or frames the whole input.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.fft
import scipy.sparse

from .. import framing, spec
from .base import BaseBackend, as_audio

log = logging.getLogger(__name__)

try:  # built by the package install; the NumPy path below is the fallback
    from .. import _melkernel  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the build
    _melkernel = None

KERNEL_BATCH = 512
NUMPY_BATCH = 1024
UNIT_FRAMES = 8192
NORMALISE_UNIT = 1 << 18


def default_threads() -> int:
    """AMANUENSIS_FRONTEND_THREADS, else every core."""
    return int(os.environ.get("AMANUENSIS_FRONTEND_THREADS", "0")) or (os.cpu_count() or 1)


def default_double_fft() -> bool:
    """AMANUENSIS_FRONTEND_FFT=float32 asks for the kernel's float32 FFT; float64 is the default."""
    value = os.environ.get("AMANUENSIS_FRONTEND_FFT", "float64").strip().lower()
    if value not in ("float32", "float64"):
        raise ValueError(f"AMANUENSIS_FRONTEND_FFT must be float32 or float64, not {value!r}")
    return value == "float64"


def kernel_available() -> bool:
    """Whether the compiled kernel was built and imports."""
    return _melkernel is not None


class SparseMel:
    """Mel filters as (first bin, last bin, weights) per band: only the non-zero bins are multiplied."""

    def __init__(self, n_mels: int) -> None:
        filters = spec.mel_filters(n_mels)
        nonzero = filters != 0
        self.lo = nonzero.argmax(axis=1).astype(np.int32)
        self.hi = (filters.shape[1] - nonzero[:, ::-1].argmax(axis=1)).astype(np.int32)
        self.bins = slice(int(self.lo.min()), int(self.hi.max()))
        # CSR, not BLAS: sparse products skip the zeros and do not start BLAS threads inside ours
        self.sparse_t = {
            dtype: scipy.sparse.csr_matrix(filters[:, self.bins].T.astype(dtype)) for dtype in (np.float32, np.float64)
        }
        self.weights = np.concatenate([filters[m, self.lo[m] : self.hi[m]] for m in range(n_mels)])
        self.offsets = np.concatenate([[0], np.cumsum(self.hi - self.lo)]).astype(np.int32)


class CpuBackend(BaseBackend):
    """Fast CPU log-mel; `batch_frames` frames per kernel pass (1 = the origin's single-frame mode).

    The kernel's FFT and mel sums run in float64 lanes by default (max abs error ~1.5e-7 on the final
    features); `double_fft=False` or AMANUENSIS_FRONTEND_FFT=float32 runs them in float32 lanes, ~1.4x
    faster at an error of ~3e-5 to 6e-5, enough to flip a close beam-search decision now and then.
    Input and output are float32 either way.
    """

    name = "cpu"

    def __init__(
        self,
        device: str = "cpu",
        batch_frames: int | None = None,
        threads: int | None = None,
        use_kernel: bool | None = None,
        double_fft: bool | None = None,
    ) -> None:
        if device != "cpu":
            raise ValueError("the cpu backend runs on the cpu only")
        self.device = "cpu"
        self.use_kernel = kernel_available() if use_kernel is None else use_kernel
        if self.use_kernel and not kernel_available():
            raise ImportError("the compiled mel kernel is not built")
        self.batch_frames = batch_frames
        self.double_fft = default_double_fft() if double_fft is None else double_fft
        self.threads = max(1, threads or default_threads())
        self.dtype = np.float64 if self.double_fft else np.float32
        self.window = spec.hann_window().astype(self.dtype)
        self._mels: dict[int, SparseMel] = {}
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="amanuensis-mel") if self.threads > 1 else None

    @property
    def kernel(self) -> str:
        """Which implementation runs: 'c-<isa>' or 'numpy'."""
        return f"c-{_melkernel.variant()}" if self.use_kernel else "numpy"

    def _mel(self, n_mels: int) -> SparseMel:
        if n_mels not in self._mels:
            self._mels[n_mels] = SparseMel(n_mels)
        return self._mels[n_mels]

    def _parallel(self, fn: Callable[[int, int], float], total: int, batch: int) -> float:
        """max of fn(start, stop) over batches of `batch` frames; whole batches are spread over the threads
        in units of at most UNIT_FRAMES, so even one 30 s window uses every core."""
        unit = max(batch, min(UNIT_FRAMES, -(-total // self.threads)) // batch * batch)

        def run_unit(bounds: tuple[int, int]) -> float:
            top = -np.inf
            for start in range(bounds[0], bounds[1], batch):
                top = max(top, fn(start, min(start + batch, bounds[1])))
            return top

        units = framing.ranges(total, unit)
        if self._pool is None or len(units) < 2:
            return max(map(run_unit, units))
        return max(self._pool.map(run_unit, units))

    def log10_mel(self, audio: np.ndarray, n_mels: int) -> np.ndarray:
        """Un-normalised float32 log10 mel, (n_mels, N // 160)."""
        return self._log10_mel(audio, n_mels)[0]

    def _log10_mel(self, audio: np.ndarray, n_mels: int) -> tuple[np.ndarray, float]:
        total = spec.n_frames(len(audio))
        out = np.empty((n_mels, total), dtype=np.float32)
        if total == 0:
            return out, -np.inf
        mel = self._mel(n_mels)
        if self.use_kernel:
            args = (mel.weights, mel.lo, mel.hi, mel.offsets, self.double_fft)

            def kernel(start: int, stop: int) -> float:
                return _melkernel.log10_mel(audio, out, total, start, stop, *args)

            return out, self._parallel(kernel, total, self.batch_frames or KERNEL_BATCH)

        def numpy_batch(start: int, stop: int) -> float:
            return self._numpy_batch(audio, out, start, stop, mel)

        return out, self._parallel(numpy_batch, total, self.batch_frames or NUMPY_BATCH)

    def _numpy_batch(self, audio: np.ndarray, out: np.ndarray, start: int, stop: int, mel: SparseMel) -> float:
        windowed = framing.frames(audio, start, stop) * self.window
        spectrum = scipy.fft.rfft(windowed, axis=-1)[:, mel.bins]
        power = np.square(spectrum.real)
        power += np.square(spectrum.imag)
        mel_spec = np.asarray(power @ mel.sparse_t[self.dtype])
        np.maximum(mel_spec, spec.LOG_FLOOR, out=mel_spec)
        np.log10(mel_spec, out=mel_spec)
        out[:, start:stop] = mel_spec.T
        return float(mel_spec.max())

    def compute(self, audio_batch: Sequence[np.ndarray], n_mels: int = 80) -> list[np.ndarray]:
        """Normalised float32 features per array; the kernel pass hands back the max, so no extra pass."""
        spec.check_n_mels(n_mels)
        results = []
        for audio in audio_batch:
            raw, top = self._log10_mel(as_audio(audio), n_mels)
            results.append(self._normalise(raw, top))
        return results

    def _normalise(self, log_spec: np.ndarray, top: float) -> np.ndarray:
        """Clamp and scale in place: one threaded C pass with the kernel, else NumPy."""
        if log_spec.size == 0:
            return log_spec
        if not self.use_kernel:
            return spec.normalise(log_spec, out=log_spec, top=top)
        flat = log_spec.reshape(-1)
        floor = top - spec.DYNAMIC_RANGE

        def clamp(start: int, stop: int) -> float:
            _melkernel.normalise(flat, start, stop, floor)
            return 0.0

        self._parallel(clamp, flat.size, NORMALISE_UNIT)
        return log_spec
