"""Runs transcription jobs off the event loop: fair queue → worker thread → Transcript.

A job holds its worker slot until its thread really finishes (a timed-out or abandoned job is told to
stop at its next segment, and only then frees the slot), so memory stays bounded by the slots: `workers`,
times `max_concurrent` with cross-request batching (the concurrent requests of a worker then share its
model through one BatchScheduler, their chunks decoded in common engine batches).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from .. import __version__
from ..audio import SAMPLE_RATE, decode_audio
from ..errors import AmanuensisError, AudioTooLongError
from ..models import ModelInfo
from ..pipeline import TranscribeOptions, Transcriber
from ..transcript import Segment, Transcript
from .errors import QueueFullError, RequestTimeoutError
from .metrics import Metrics
from .pool import ModelPool
from .queue import FairQueue, QueueFull
from .settings import ServerSettings

log = logging.getLogger(__name__)

RECENT_JOBS = 20
SegmentSink = Callable[[Segment], None]
ReadySink = Callable[[float], None]


class JobCancelled(Exception):
    """Raised inside a worker when its request timed out or its client went away."""


@dataclass
class Job:
    """One transcription request, its upload on disk and its options."""

    id: str
    client: str
    path: Path
    options: TranscribeOptions
    model: ModelInfo
    arrived: float = field(default_factory=time.monotonic)


@dataclass
class JobResult:
    """A finished job: the transcript and how it was served."""

    transcript: Transcript
    processing_time: float
    queue_time: float
    frontend: str | None

    @property
    def realtime_factor(self) -> float:
        """Processing seconds per second of audio (lower is faster)."""
        duration = self.transcript.duration
        return round(self.processing_time / duration, 4) if duration > 0 else 0.0


@dataclass
class Counters:
    """What /status reports about traffic."""

    served: int = 0
    failed: int = 0
    rejected: int = 0
    jobs_completed: int = 0
    jobs_failed: int = 0
    jobs_cancelled: int = 0
    audio_seconds: float = 0.0
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT_JOBS))


def probe_seconds(path: Path) -> float:
    """The duration a container declares (0.0 when unknown or unreadable: decoding then decides)."""
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if container.duration is not None:
                return container.duration / av.time_base
            stream = container.streams.audio[0] if container.streams.audio else None
            if stream is not None and stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError, IndexError):
        pass
    return 0.0


def load_audio(path: Path, max_seconds: float) -> np.ndarray:
    """Decode an upload, refusing audio longer than `max_seconds` before and after decoding."""
    declared = probe_seconds(path)
    if declared > max_seconds:
        raise AudioTooLongError(f"the audio lasts {declared:.0f} s; this server accepts at most {max_seconds:g} s")
    samples = decode_audio(path)
    seconds = len(samples) / SAMPLE_RATE
    if seconds > max_seconds:
        raise AudioTooLongError(f"the audio lasts {seconds:.0f} s; this server accepts at most {max_seconds:g} s")
    return samples


def frontend_status(transcriber: Transcriber) -> dict | None:
    """The front-end chain's status, or None when the transcriber has no chain."""
    frontend = getattr(transcriber, "frontend", None)
    return frontend.status() if frontend is not None and hasattr(frontend, "status") else None


def _calls(status: dict | None) -> dict[str, int]:
    return {b["name"]: int(b.get("calls") or 0) for b in (status or {}).get("backends", [])}


def _served_by(before: dict[str, int], status: dict | None) -> str | None:
    """The backend that served most of the feature calls made during a job (the active one if none)."""
    if status is None:
        return None
    served = {name: calls - before.get(name, 0) for name, calls in _calls(status).items()}
    served = {name: count for name, count in served.items() if count > 0}
    return max(served, key=served.__getitem__) if served else status.get("active")


def _device(transcriber: Transcriber) -> str:
    """The device CTranslate2 actually runs the model on (resolves "auto")."""
    model = getattr(getattr(transcriber, "whisper", None), "model", None)
    return str(getattr(model, "device", None) or transcriber.device)


class TranscriptionService:
    """The model pool, the fair queue, the worker threads and the traffic counters."""

    def __init__(self, settings: ServerSettings, metrics: Metrics, pool: ModelPool | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.pool = pool or ModelPool(settings)
        self.queue = FairQueue(settings.slots(), settings.max_queue)
        self.executor = ThreadPoolExecutor(settings.slots(), thread_name_prefix="amanuensis-worker")
        self.counters = Counters()
        self.started = time.time()
        self.accepting = False
        metrics.watch(self.live)

    async def start(self) -> None:
        """Load the default model (in a thread) and start accepting jobs."""
        await asyncio.to_thread(self.pool.load_default)
        self.accepting = True

    async def stop(self) -> None:
        """Stop accepting; wait for running jobs to end."""
        self.accepting = False
        await asyncio.to_thread(self.executor.shutdown, True, cancel_futures=True)
        await asyncio.to_thread(self.pool.close)

    @property
    def ready(self) -> bool:
        """True when the default model is loaded and jobs are accepted."""
        return self.accepting and self.pool.loaded

    async def resolve_model(self, name: str | None) -> ModelInfo:
        """Resolve a request's `model` (raises ModelError naming it)."""
        return await asyncio.to_thread(self.pool.resolve, name)

    def retry_after(self) -> int:
        """Seconds a refused client should wait: the queue ahead of it at the recent pace."""
        recent = [job["processing_time"] for job in self.counters.recent] or [5.0]
        waiting = self.queue.depth + self.queue.running
        return int(min(600, max(1, math.ceil(statistics.fmean(recent) * waiting / self.queue.workers))))

    async def run(self, job: Job, on_segment: SegmentSink | None = None, on_ready: ReadySink | None = None
                  ) -> JobResult:
        """Wait for a worker (fairly), transcribe `job` in its thread and return the result.

        `on_ready(duration)` and `on_segment(segment)` are called from the worker thread.
        """
        timeout = self.settings.request_timeout
        try:
            slot = await asyncio.wait_for(self.queue.acquire(job.client), self._left(job))
        except QueueFull as exc:
            self.counters.rejected += 1
            self.metrics.rejected.inc()
            raise QueueFullError(exc.depth, self.retry_after()) from exc
        except asyncio.TimeoutError as exc:
            raise RequestTimeoutError(timeout, "still waiting for a worker") from exc
        queue_time = time.monotonic() - job.arrived
        self.metrics.queue_wait.observe(queue_time)
        cancel = threading.Event()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.executor, self._work, job, slot, cancel, on_segment, on_ready)
        future.add_done_callback(lambda done: self._finished(job, slot, done))
        try:
            transcript, processing, frontend = await asyncio.wait_for(asyncio.shield(future), self._left(job))
        except asyncio.TimeoutError as exc:
            cancel.set()
            raise RequestTimeoutError(timeout, "transcribing") from exc
        except asyncio.CancelledError:
            cancel.set()
            raise
        return JobResult(transcript, processing, queue_time, frontend)

    def _left(self, job: Job) -> float:
        return max(0.0, job.arrived + self.settings.request_timeout - time.monotonic())

    def _work(self, job: Job, slot: int, cancel: threading.Event, on_segment: SegmentSink | None,
              on_ready: ReadySink | None) -> tuple[Transcript, float, str | None]:
        if cancel.is_set():
            raise JobCancelled("the request ended before its turn came")
        transcriber = self.pool.get(job.model, slot)
        started = time.perf_counter()
        samples = load_audio(job.path, self.settings.max_audio_seconds)
        if on_ready:
            on_ready(len(samples) / SAMPLE_RATE)

        def segment_done(segment: Segment) -> None:
            if cancel.is_set():
                raise JobCancelled("the request timed out or its client went away")
            if on_segment:
                on_segment(segment)

        calls_before = _calls(frontend_status(transcriber))
        transcript = transcriber.transcribe(samples, job.options, on_segment=segment_done)
        processing = time.perf_counter() - started
        return transcript, processing, _served_by(calls_before, frontend_status(transcriber))

    def _finished(self, job: Job, slot: int, future: asyncio.Future) -> None:
        """Runs on the loop when the worker thread ends: free the slot, remove the upload, count."""
        self.queue.release(slot)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(job.path)
        error = future.exception() if not future.cancelled() else None
        if error is None and not future.cancelled():
            transcript, processing, _ = future.result()
            self._count(job, transcript, processing)
        elif isinstance(error, JobCancelled):
            self.counters.jobs_cancelled += 1
            self.metrics.transcriptions.labels(job.model.name, "cancelled").inc()
            log.info("job cancelled: job_id=%s", job.id)
        else:
            self.counters.jobs_failed += 1
            self.metrics.transcriptions.labels(job.model.name, "failed").inc()
            if error is not None and not isinstance(error, AmanuensisError):
                log.error("job failed: job_id=%s error=%r", job.id, error)

    def _count(self, job: Job, transcript: Transcript, processing: float) -> None:
        self.counters.jobs_completed += 1
        self.counters.audio_seconds += transcript.duration
        rtf = processing / transcript.duration if transcript.duration > 0 else 0.0
        self.counters.recent.append({
            "job_id": job.id,
            "model": transcript.model,
            "audio_seconds": round(transcript.duration, 3),
            "processing_time": round(processing, 4),
            "realtime_factor": round(rtf, 4),
        })
        self.metrics.observe_transcription(job.model.name, transcript.duration, processing)

    def record_request(self, status: int) -> None:
        """Count one finished transcription request by its HTTP status."""
        if status < 400:
            self.counters.served += 1
        else:
            self.counters.failed += 1

    def live(self) -> dict:
        """Queue and front-end state (cheap; for /metrics)."""
        return {"queue": self.queue_status(), "frontend": self.frontend(), "batching": self.pool.batching()}

    def frontend(self) -> dict | None:
        """The default model's front-end chain status."""
        return frontend_status(self.pool.default) if self.pool.loaded else None

    def queue_status(self) -> dict:
        """Workers, slots (transcriptions at once), running and waiting jobs."""
        return {
            "workers": self.settings.workers,
            "slots": self.queue.workers,
            "running": self.queue.running,
            "waiting": self.queue.depth,
            "max_waiting": self.queue.max_waiting,
        }

    def status(self) -> dict:
        """Everything /status shows."""
        counters = self.counters
        recent = list(counters.recent)
        rtfs = [job["realtime_factor"] for job in recent]
        model = None
        if self.pool.loaded:
            default = self.pool.default
            info = default.info
            model = {
                "name": info.name,
                "source": info.source,
                "path": info.path,
                "multilingual": info.multilingual,
                "languages": info.languages,
                "device": _device(default),
                "compute_type": default.compute_type,
                "aliases": self.pool.aliases(),
            }
        return {
            "version": __version__,
            "uptime_s": round(time.time() - self.started, 3),
            "ready": self.ready,
            "model": model,
            "models_loaded": [info.name for info in self.pool.loaded_models()],
            "frontend": self.frontend(),
            "requests": {
                "served": counters.served,
                "failed": counters.failed,
                "rejected_queue_full": counters.rejected,
            },
            "jobs": {
                "completed": counters.jobs_completed,
                "failed": counters.jobs_failed,
                "cancelled": counters.jobs_cancelled,
                "audio_seconds": round(counters.audio_seconds, 3),
            },
            "queue": self.queue_status(),
            "batching": self.pool.batching(),
            "realtime_factor": {
                "last": rtfs,
                "mean": round(statistics.fmean(rtfs), 4) if rtfs else None,
                "recent_jobs": recent,
            },
        }
