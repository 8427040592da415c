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

import numpy as np

from .. import __version__
from ..audio import decode_audio
from ..constants import SAMPLE_RATE
from ..errors import AmanuensisError, JobCancelled, check_duration
from ..models import ModelInfo
from ..options import TranscribeOptions
from ..pipeline import ProgressCallback, Transcriber
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


@dataclass
class Job:
    """One transcription to run: a request's upload (removed when done) or a stored job's audio (kept)."""

    id: str
    client: str
    path: Path
    options: TranscribeOptions
    model: ModelInfo
    arrived: float = field(default_factory=time.monotonic)
    timeout: float | None = None
    """Seconds from arrival to answer (None: no limit, and a full queue is waited out, not refused)."""
    keep_audio: bool = False


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


def load_audio(path: Path, max_seconds: float) -> np.ndarray:
    """Decode audio, refusing more than `max_seconds` (the declared length was checked at intake)."""
    samples = decode_audio(path)
    check_duration(len(samples) / SAMPLE_RATE, max_seconds)
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
    model = getattr(getattr(transcriber, "recognizer", None), "model", None)
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
        self._expiry: asyncio.Task | None = None
        metrics.watch(self.live)

    async def start(self) -> None:
        """Load the default model (in a thread), start accepting jobs and unloading idle models."""
        await asyncio.to_thread(self.pool.load_default)
        self.accepting = True
        if self.settings.model_ttl:
            self._expiry = asyncio.create_task(self._unload_idle_models(), name="models-ttl")

    async def _unload_idle_models(self) -> None:
        """Every quarter of `model_ttl` (1 to 30 s), unload the models idle that long."""
        interval = min(30.0, max(1.0, self.settings.model_ttl / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.pool.unload_idle)
            except Exception:  # noqa: BLE001 - try again at the next tick
                log.exception("unloading idle models failed")

    async def stop(self) -> None:
        """Stop accepting; wait for running jobs to end."""
        self.accepting = False
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry
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

    async def run(self, job: Job, on_segment: SegmentSink | None = None, on_ready: ReadySink | None = None,
                  progress: ProgressCallback | None = None) -> JobResult:
        """Wait for a worker (fairly), transcribe `job` in its thread and return the result: the one runner
        of synchronous requests and stored jobs.

        `on_ready(duration)`, `progress(done_s, total_s)` and `on_segment(segment)` are called from the
        worker thread; any of them may raise JobCancelled to stop the work at the next chunk.
        """
        slot = await self._slot(job)
        queue_time = time.monotonic() - job.arrived
        self.metrics.queue_wait.observe(queue_time)
        cancel = threading.Event()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.executor, self._work, job, slot, cancel, on_segment, on_ready, progress)
        future.add_done_callback(lambda done: self._finished(job, slot, done))
        try:
            transcript, processing, frontend = await asyncio.wait_for(asyncio.shield(future), self._left(job))
        except asyncio.TimeoutError as exc:
            cancel.set()
            raise RequestTimeoutError(job.timeout or 0.0, "transcribing") from exc
        except asyncio.CancelledError:
            cancel.set()
            raise
        return JobResult(transcript, processing, queue_time, frontend)

    async def _slot(self, job: Job) -> int:
        """A worker slot; a request with a time limit is refused when the queue is full, a stored job waits."""
        while True:
            try:
                return await asyncio.wait_for(self.queue.acquire(job.client), self._left(job))
            except QueueFull as exc:
                if job.timeout is None:
                    await asyncio.sleep(1.0)
                    continue
                self.counters.rejected += 1
                self.metrics.rejected.inc()
                raise QueueFullError(exc.depth, self.retry_after()) from exc
            except asyncio.TimeoutError as exc:
                raise RequestTimeoutError(job.timeout or 0.0, "still waiting for a worker") from exc

    def _left(self, job: Job) -> float | None:
        if job.timeout is None:
            return None
        return max(0.0, job.arrived + job.timeout - time.monotonic())

    def _work(self, job: Job, slot: int, cancel: threading.Event, on_segment: SegmentSink | None,
              on_ready: ReadySink | None, progress: ProgressCallback | None) -> tuple[Transcript, float, str | None]:
        if cancel.is_set():
            raise JobCancelled("the request ended before its turn came")
        with self.pool.using(job.model, slot) as transcriber:
            return self._transcribe(transcriber, job, cancel, on_segment, on_ready, progress)

    def _transcribe(self, transcriber: Transcriber, job: Job, cancel: threading.Event,
                    on_segment: SegmentSink | None, on_ready: ReadySink | None,
                    progress: ProgressCallback | None) -> tuple[Transcript, float, str | None]:
        started = time.perf_counter()
        samples = load_audio(job.path, self.settings.max_audio_seconds)
        duration = len(samples) / SAMPLE_RATE
        if on_ready:
            on_ready(duration)
        if progress:
            progress(0.0, duration)

        def check() -> None:
            if cancel.is_set():
                raise JobCancelled("the request timed out or its client went away")

        def segment_done(segment: Segment) -> None:
            check()
            if on_segment:
                on_segment(segment)

        def progressed(done: float, total: float) -> None:
            check()
            if progress:
                progress(done, total)

        calls_before = _calls(frontend_status(transcriber))
        transcript = transcriber.transcribe(samples, job.options, on_segment=segment_done, progress=progressed)
        processing = time.perf_counter() - started
        return transcript, processing, _served_by(calls_before, frontend_status(transcriber))

    def _finished(self, job: Job, slot: int, future: asyncio.Future) -> None:
        """Runs on the loop when the worker thread ends: free the slot, remove the upload, count."""
        self.queue.release(slot)
        if not job.keep_audio:
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
