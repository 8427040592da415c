"""`amanuensis bench frontend`: our log-mel backends against the peers, in one process, on one signal.

Every row computes Whisper log-mel features (80 mels, N // 160 frames, normalised over the whole
input) of the same deterministic mixed signal and reports seconds, realtime factor, the ratio to
faster-whisper's FeatureExtractor, peak memory and the max abs error against the float64 reference.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib.util
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from ..features import signals, spec
from .machine import describe, load_average, summary

log = logging.getLogger(__name__)

PEERS = ("faster_whisper", "asrfront", "whisper", "torchaudio", "librosa")
OUR_BACKENDS = ("cpu", "cpu-f32", "numpy", "torch", "onnx", "reference")
DEFAULT_BATCH_FRAMES = (1, 20, 100, 1000, 3000)


@dataclass
class Row:
    """One measured row of the table (the JSON schema of `--json`)."""

    name: str
    backend: str
    batch_frames: int | None
    seconds: float
    realtime: float
    vs_faster_whisper: float | None
    max_abs_err: float
    peak_mb: float
    work_mb: float
    vs_asrfront: float | None = None


def _finish(log_spec: np.ndarray) -> np.ndarray:
    """Whisper's tail for peers that stop at the power mel spectrogram: drop last frame, log, clamp."""
    log_spec = np.log10(np.maximum(log_spec[..., :-1], spec.LOG_FLOOR))
    return spec.normalise(log_spec, out=log_spec)


def _peer(name: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """A function audio -> features for an installed peer, or None."""
    if importlib.util.find_spec(name) is None:
        return None
    if name == "faster_whisper":
        from faster_whisper.feature_extractor import FeatureExtractor

        extractor = FeatureExtractor(80)
        return lambda audio: extractor(audio, padding=0)
    if name == "asrfront":
        from asrfront import whisper as asr

        return lambda audio: asr.log_mel(audio, 80, pad_or_trim=False)
    if name == "whisper":
        import torch
        import whisper

        return lambda audio: whisper.log_mel_spectrogram(torch.from_numpy(audio), 80).numpy()
    if name == "torchaudio":
        import torch
        import torchaudio

        transform = torchaudio.transforms.MelSpectrogram(
            16000,
            n_fft=400,
            hop_length=160,
            n_mels=80,
            power=2.0,
            center=True,
            pad_mode="reflect",
            norm="slaney",
            mel_scale="slaney",
        )
        return lambda audio: _finish(transform(torch.from_numpy(audio)).numpy())
    if name == "librosa":
        import librosa

        return lambda audio: _finish(
            librosa.feature.melspectrogram(
                y=audio, sr=16000, n_fft=400, hop_length=160, n_mels=80, pad_mode="reflect", power=2.0
            )
        )
    raise ValueError(name)


def _ours(backend: str, batch_frames: int | None) -> Callable[[np.ndarray], np.ndarray] | None:
    from ..errors import BackendError
    from ..features.backends import BackendSpec, create
    from ..features.backends.cpu import CpuBackend

    try:
        if backend == "numpy":
            instance = CpuBackend(batch_frames=batch_frames, use_kernel=False)
        elif backend == "cpu-f32":
            instance = CpuBackend(batch_frames=batch_frames, double_fft=False)
        else:
            instance = create(BackendSpec(backend, None, batch_frames))
    except (BackendError, ImportError) as exc:
        log.warning("skipping amanuensis:%s: %s", backend, exc)
        return None
    return lambda audio: instance.compute([audio], 80)[0]


class _PeakMemory:
    """Peak resident memory growth during a block: the kernel's high-water mark, else sampling."""

    def __init__(self) -> None:
        self.peak_bytes = 0

    @staticmethod
    def _status(field: str) -> int:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
        return 0

    def __enter__(self) -> _PeakMemory:
        self.base = self._status("VmRSS:")
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            self._sampler = None
        except OSError:
            self._stop = threading.Event()
            self._max = self.base
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self._max = max(self._max, self._status("VmRSS:"))

    def __exit__(self, *exc: object) -> None:
        if self._sampler is None:
            peak = self._status("VmHWM:")
        else:
            self._stop.set()
            self._sampler.join()
            peak = self._max
        self.peak_bytes = max(0, peak - self.base)


def _release_memory() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _measure_once(
    fn: Callable[[np.ndarray], np.ndarray], audio: np.ndarray, reference: np.ndarray
) -> tuple[float, float, float, float]:
    """(seconds, max abs error, peak MB, peak MB beyond the output) of one run."""
    _release_memory()
    with _PeakMemory() as memory:
        started = time.perf_counter()
        features = fn(audio)
        elapsed = time.perf_counter() - started
    frames = min(features.shape[-1], reference.shape[-1])
    if features.shape[-1] != reference.shape[-1]:
        log.warning("frame count %d differs from the contract's %d", features.shape[-1], reference.shape[-1])
    error = float(np.abs(features[..., :frames] - reference[..., :frames]).max())
    peak = memory.peak_bytes / 2**20
    return elapsed, error, peak, max(0.0, peak - features.nbytes / 2**20)


def run(
    seconds: float,
    backends: list[str],
    peers: list[str],
    batch_frames: list[int | None],
    repeat: int,
    seed: int = 0,
    progress: Callable[[Row], None] | None = None,
) -> list[Row]:
    """Measure every row; repeats are interleaved across rows so that they share the machine's state."""
    audio = signals.mixed_signal(seconds, seed=seed)
    reference = spec.reference_log_mel(audio, 80)
    plan: list[tuple[str, str, int | None, Callable | None]] = []
    for peer in peers:
        plan.append((peer, "peer", None, _peer(peer)))
    for backend in backends:
        plan.append((f"amanuensis:{backend}", backend, None, _ours(backend, None)))
        if backend == "cpu":
            for frames in batch_frames:
                plan.append((f"amanuensis:{backend}", backend, frames, _ours(backend, frames)))
    for name, *_ in [p for p in plan if p[3] is None]:
        log.warning("skipping %s (not available)", name)
    plan = [p for p in plan if p[3] is not None]
    best: dict[int, Row] = {}
    for attempt in range(repeat):
        for index, (name, backend, frames, fn) in enumerate(plan):
            slow = backend == "reference" or (frames is not None and frames < 100)
            if attempt and (slow or index not in best):
                continue
            try:
                elapsed, error, peak, work = _measure_once(fn, audio, reference)
            except Exception as exc:  # a peer that breaks must not stop the table
                log.warning("%s failed: %s", name, exc)
                continue
            row = Row(
                name,
                backend,
                frames,
                round(elapsed, 4),
                round(seconds / elapsed, 1),
                None,
                error,
                round(peak, 1),
                round(work, 1),
            )
            if index not in best or row.seconds < best[index].seconds:
                best[index] = row
            if progress:
                progress(row)
    rows = [best[i] for i in sorted(best)]
    base = next((r.seconds for r in rows if r.name == "faster_whisper"), None)
    rival = next((r.seconds for r in rows if r.name == "asrfront"), None)
    for row in rows:
        row.vs_faster_whisper = round(base / row.seconds, 2) if base else None
        row.vs_asrfront = round(rival / row.seconds, 2) if rival else None
    return rows


def format_table(rows: list[Row], audio_seconds: float) -> str:
    """The human-readable table."""
    head = (
        f"{'name':<22} {'batch_frames':>12} {'seconds':>9} {'realtime':>10} {'vs_fw':>7} {'vs_asrf':>7} "
        f"{'peak_mb':>8} {'work_mb':>8} {'max_abs_err':>11}"
    )
    lines = [f"log-mel front end, {audio_seconds:g} s of mixed signal, 80 mels, {os.cpu_count()} cpus", head]
    for r in rows:
        frames = "auto" if r.batch_frames is None else str(r.batch_frames)
        ratio = f"{r.vs_faster_whisper:.2f}" if r.vs_faster_whisper else "-"
        rival = f"{r.vs_asrfront:.2f}" if r.vs_asrfront else "-"
        lines.append(
            f"{r.name:<22} {frames:>12} {r.seconds:>9.3f} {r.realtime:>9.0f}x {ratio:>7} {rival:>7} "
            f"{r.peak_mb:>8.1f} {r.work_mb:>8.1f} {r.max_abs_err:>11.2e}"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table, and with --json one JSON object as the last line."""
    parser = argparse.ArgumentParser(prog="amanuensis bench frontend", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6240.0, help="length of the test signal")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument(
        "--backends",
        default=",".join(OUR_BACKENDS),
        help="ours, comma-separated: cpu, cpu-f32, numpy, torch, onnx, reference",
    )
    parser.add_argument("--peers", default=",".join(PEERS), help="peers, comma-separated ('' for none)")
    parser.add_argument(
        "--batch-frames",
        default=",".join(map(str, DEFAULT_BATCH_FRAMES)),
        help="extra cpu rows at these batch sizes ('' for none)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; the best is kept")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    split = [s.strip() for s in args.peers.split(",") if s.strip()]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    frames = [int(f) for f in args.batch_frames.split(",") if f.strip()]

    def progress(row: Row) -> None:
        if not args.json:
            sys.stderr.write(f"  {row.name} batch_frames={row.batch_frames}: {row.seconds:.3f} s\n")

    machine = describe()
    rows = run(args.seconds, backends, split, frames, max(1, args.repeat), args.seed, progress)
    machine["load_end"] = load_average()
    sys.stdout.write(summary(machine) + "\n" + format_table(rows, args.seconds))
    if args.json:
        payload = {"audio_seconds": args.seconds, "rows": [_json_row(r) for r in rows], "machine": machine}
        sys.stdout.write(json.dumps(payload) + "\n")
    return 0


def _json_row(row: Row) -> dict:
    data = asdict(row)
    data["max_abs_err"] = float(f"{row.max_abs_err:.3e}")
    return data
