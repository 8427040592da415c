"""One file through the pipeline, the same on a local worker thread and in a Ray actor."""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass

import numpy as np

from ..audio import decode_audio
from ..constants import SAMPLE_RATE
from ..errors import AmanuensisError
from ..pipeline import TranscribeOptions, Transcriber
from ..transcript import Transcript

log = logging.getLogger(__name__)


@dataclass
class FileResult:
    """What a worker hands back for one file: a transcript, or the error that stopped it."""

    path: str
    transcript: Transcript | None
    error: str | None
    duration: float | None
    seconds: float
    worker: str
    node: str


@dataclass(frozen=True)
class WorkerSpec:
    """How every worker loads its model."""

    model: str | None
    device: str = "auto"
    compute_type: str = "auto"
    threads: int = 1


def describe_error(exc: BaseException) -> str:
    """One line naming what went wrong (our errors by message, others by type and message)."""
    if isinstance(exc, AmanuensisError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def decode(path: str) -> np.ndarray:
    """Decode one input file to 16 kHz mono float32 (raises AudioError on junk)."""
    return decode_audio(path)


class CorpusWorker:
    """A model loaded once and used for file after file."""

    def __init__(self, spec: WorkerSpec, name: str, node: str | None = None) -> None:
        self.transcriber = Transcriber(spec.model, device=spec.device, compute_type=spec.compute_type,
                                       cpu_threads=spec.threads)
        self.name = name
        self.node = node or socket.gethostname()

    def run(self, path: str, options: TranscribeOptions, samples: np.ndarray | None = None) -> FileResult:
        """Transcribe one file (decoding it unless `samples` are given); never raises for a bad file."""
        started = time.perf_counter()
        duration = None
        try:
            if samples is None:
                samples = decode(path)
            duration = len(samples) / SAMPLE_RATE
            transcript = self.transcriber.transcribe(samples, options)
            error = None
        except Exception as exc:  # noqa: BLE001 - one bad file is recorded, and the run goes on
            if not isinstance(exc, AmanuensisError):
                log.exception("unexpected failure on %s", path)
            transcript, error = None, describe_error(exc)
        return FileResult(path, transcript, error, duration, time.perf_counter() - started, self.name, self.node)
