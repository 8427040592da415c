"""The job queue: workers that run persisted jobs one after another, live progress, cancel, expiry.

Progress is the pipeline's own: the runner's `progress(done_s, total_s)` and `on_segment(segment)`
callbacks fire as chunks finish, and they are also where a cancel takes effect (JobCancelled is raised
inside the transcription between chunks, so the work really stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import AmanuensisError, JobCancelled, error_json, error_of
from ..formats import render, segment_json
from ..options import TranscribeOptions
from ..pipeline import ProgressCallback, SegmentCallback
from ..transcript import Segment, Transcript
from .callbacks import CallbackSender
from .events import Channel, Event
from .store import CANCELLED, DONE, FAILED, PENDING, QUEUED, RUNNING, WAITING, JobRecord, JobStore

log = logging.getLogger(__name__)

RECENT_CHANNELS = 64
DEFAULT_RETENTION_S = 7 * 24 * 3600.0
MAX_ATTEMPTS = 3
"""A job that was running when the server died this many times is failed instead of re-run."""


class Runner(Protocol):
    """Transcribes one job's audio, calling progress and on_segment from its worker thread."""

    def __call__(self, job: JobRecord, audio: Path, options: TranscribeOptions, progress: ProgressCallback,
                 on_segment: SegmentCallback) -> Awaitable[Transcript]: ...


@dataclass
class _Live:
    """What the worker knows about the job it runs now."""

    job_id: str
    cancel: threading.Event = field(default_factory=threading.Event)
    requeue: bool = False
    task: asyncio.Task | None = None
    started: float = field(default_factory=time.time)
    done_s: float = 0.0
    total_s: float | None = None


def progress_view(done_s: float, total_s: float | None, started: float | None, status: str) -> dict[str, Any]:
    """Audio seconds done and total, percentage and estimated seconds left (None while unknown)."""
    if status == DONE and total_s:
        done_s = total_s
    percent = round(100.0 * done_s / total_s, 1) if total_s else 0.0
    eta = None
    if status == RUNNING and started and total_s and done_s > 0:
        elapsed = max(0.0, time.time() - started)
        eta = round(elapsed / done_s * max(0.0, total_s - done_s), 1)
    elif status == DONE:
        eta = 0.0
    return {"done_s": round(done_s, 3), "total_s": round(total_s, 3) if total_s else total_s,
            "percent": min(percent, 100.0), "eta_s": eta}


def job_view(job: JobRecord, live: _Live | None = None, with_result: bool = False) -> dict[str, Any]:
    """The JSON the API shows for a job (the transcript under `result` when asked and done)."""
    done_s, total_s = (live.done_s, live.total_s) if live else (job.done_s, job.total_s)
    data: dict[str, Any] = {
        "id": job.id,
        "object": "transcription.job",
        "status": job.status,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "filename": job.filename,
        "model": job.model,
        "response_format": job.response_format,
        "options": job.options,
        "progress": progress_view(done_s, total_s, job.started_at, job.status),
        "attempts": job.attempts,
        "error": job.error,
    }
    if with_result and job.result is not None:
        data["result"] = result_json(job)
    if job.callback_url:
        data["callback"] = callback_view(job)
    return data


def callback_view(job: JobRecord) -> dict[str, Any]:
    """The job's callback: its URL and delivery state (waiting while the job runs, then pending until
    delivered or failed)."""
    state = {"status": WAITING, "attempts": 0, **(job.callback or {})}
    if state["status"] == WAITING and job.finished:
        state["status"] = PENDING
    return {"url": job.callback_url, **state}


def callback_body(job: JobRecord) -> dict[str, Any]:
    """What a callback POSTs: the finished job with its result (or error), without the delivery state."""
    data = job_view(job, with_result=True)
    data.pop("callback", None)
    return data


def job_transcript(job: JobRecord) -> Transcript:
    """The finished job's transcript."""
    if job.result is None:
        raise ValueError(f"job {job.id} has no result")
    return Transcript.from_dict(job.result)


def result_json(job: JobRecord) -> dict[str, Any]:
    """The transcript as the job's JSON response format (verbose_json when asked, else json)."""
    fmt = "verbose_json" if job.response_format == "verbose_json" else "json"
    return json.loads(render(job_transcript(job), fmt))


class JobManager:
    """Owns the store, the pending queue, the worker tasks, the event channels and the expiry loop."""

    def __init__(self, store: JobStore, runner: Runner, *, workers: int = 1,
                 retention_s: float = DEFAULT_RETENTION_S, max_attempts: int = MAX_ATTEMPTS,
                 callbacks: CallbackSender | None = None) -> None:
        self.store = store
        self.callbacks = callbacks
        self.runner = runner
        self.workers = workers
        self.retention_s = retention_s
        self.max_attempts = max_attempts
        self.live: dict[str, _Live] = {}
        self._channels: OrderedDict[str, Channel] = OrderedDict()
        self._pending: asyncio.Queue[str] | None = None
        self._tasks: list[asyncio.Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover what a previous process left, then start the workers and the expiry loop."""
        self._loop = asyncio.get_running_loop()
        self._pending = asyncio.Queue()
        for job in self.store.unfinished():
            if job.status == RUNNING and job.attempts >= self.max_attempts:
                self.store.finish(job.id, FAILED, error=error_json(
                    500, f"the server stopped {job.attempts} times while running this job; giving up", "job_crashed"))
        requeued = self.store.requeue_running()
        self.store.sweep_orphans()
        self.expire()
        pending = self.store.unfinished()
        for job in pending:
            self._channel(job.id).publish("status", job_view(job))
            self._pending.put_nowait(job.id)
        log.info("jobs recovered: pending=%d rerun=%d data_dir=%s", len(pending), requeued, self.store.data_dir)
        self._tasks = [asyncio.create_task(self._worker(n), name=f"jobs-worker-{n}") for n in range(self.workers)]
        self._tasks.append(asyncio.create_task(self._expire_loop(), name="jobs-expiry"))
        if self.callbacks is not None:
            self.callbacks.start()

    def release_streams(self) -> None:
        """End every open event stream (clients reconnect); lets a server shut down without waiting on them."""
        for channel in self._channels.values():
            channel.release()

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop the workers; a running job is interrupted between chunks and queued again for next time."""
        self.release_streams()
        for live in list(self.live.values()):
            live.requeue = True
            self._interrupt(live)
        deadline = time.monotonic() + timeout
        while self.live and time.monotonic() < deadline:  # each stops at its next chunk
            await asyncio.sleep(0.05)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self.callbacks is not None:
            await self.callbacks.stop()
        self.store.close()

    # -- requests --------------------------------------------------------------------------------

    async def submit(self, upload: Path, *, filename: str | None, model: str | None, response_format: str,
                     options: TranscribeOptions, client: str = "", callback_url: str | None = None) -> JobRecord:
        """Persist a new job (its audio moved into the data directory, durably) and queue it; a checked
        `callback_url` is POSTed the job when it ends (see amanuensis.jobs.callbacks)."""
        if self._pending is None:
            raise RuntimeError("the job manager is not started")
        job = await asyncio.to_thread(self.store.add, upload, filename=filename, model=model,
                                      response_format=response_format, options=options.to_dict(),
                                      client=client, callback_url=callback_url)
        self._channel(job.id).publish("status", job_view(job))
        self._pending.put_nowait(job.id)
        log.info("job queued: job_id=%s model=%s filename=%s", job.id, model, filename)
        return job

    def get(self, job_id: str) -> JobRecord | None:
        """The job, or None."""
        return self.store.get(job_id)

    def view(self, job: JobRecord, with_result: bool = False) -> dict[str, Any]:
        """job_view with live progress for a running job."""
        return job_view(job, self.live.get(job.id), with_result)

    async def cancel(self, job_id: str, wait: float = 10.0) -> JobRecord | None:
        """Cancel a queued or running job; waits (up to `wait` s) for a running one to stop."""
        job = self.store.get(job_id)
        if job is None or job.finished:
            return job
        if job.status == QUEUED and self.store.finish(job_id, CANCELLED, only_from=(QUEUED,)):
            job = self.store.get(job_id)
            self._publish_final(job)
            log.info("job cancelled while queued: job_id=%s", job_id)
            return job
        live = self.live.get(job_id)
        if live is not None:
            self._interrupt(live)
            deadline = time.monotonic() + wait
            while job_id in self.live and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        return self.store.get(job_id)

    async def events(self, job_id: str, after: int = 0, heartbeat: float | None = None
                     ) -> AsyncIterator[Event | None]:
        """The job's events after position `after`: live while it runs, replayed from the store after
        (None for each `heartbeat` seconds of silence)."""
        channel = self._channels.get(job_id)
        if channel is None:
            channel = self._replay(job_id)
        async for event in channel.follow(after, heartbeat):
            yield event

    def expire(self, now: float | None = None) -> int:
        """Delete finished jobs older than the retention time; returns how many."""
        removed = self.store.expire((now or time.time()) - self.retention_s)
        return removed

    # -- internals -------------------------------------------------------------------------------

    @staticmethod
    def _interrupt(live: _Live) -> None:
        """Stop a running job: its thread raises JobCancelled at the next chunk; a job still waiting for a
        worker slot (no progress yet) is cancelled at once."""
        live.cancel.set()
        if live.total_s is None and live.task is not None:
            live.task.cancel()

    def _channel(self, job_id: str) -> Channel:
        channel = self._channels.get(job_id)
        if channel is None:
            channel = self._channels[job_id] = Channel()
        return channel

    def _replay(self, job_id: str) -> Channel:
        """A closed channel rebuilt from the store for a job whose live channel is gone."""
        channel = Channel()
        job = self.store.get(job_id)
        if job is None:
            return channel
        channel.publish("status", job_view(job))
        if job.status == DONE:
            for segment in result_json(job).get("segments", []):
                channel.publish("segment", segment)
        if job.finished:
            self._publish_final(job, channel)
        return channel

    def _publish_final(self, job: JobRecord, channel: Channel | None = None) -> None:
        if job.callback_url and self.callbacks is not None:
            self.callbacks.wake()
        channel = channel or self._channel(job.id)
        channel.publish(job.status, job_view(job, with_result=True))
        if channel is self._channels.get(job.id):
            self._channels.move_to_end(job.id)
            finished = [k for k, c in self._channels.items() if c.closed]
            for key in finished[: max(0, len(finished) - RECENT_CHANNELS)]:
                del self._channels[key]

    async def _worker(self, number: int) -> None:
        assert self._pending is not None
        while True:
            job_id = await self._pending.get()
            if not self.store.claim(job_id):
                continue  # cancelled while it waited
            job = self.store.get(job_id)
            assert job is not None
            task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                task.cancel()
                raise

    async def _run(self, job: JobRecord) -> None:
        live = self.live[job.id] = _Live(job.id, task=asyncio.current_task(), started=job.started_at or time.time())
        channel = self._channel(job.id)
        channel.publish("status", self.view(job))
        log.info("job started: job_id=%s attempt=%d", job.id, job.attempts)
        try:
            transcript = await self.runner(job, self.store.audio_path(job), TranscribeOptions.from_dict(job.options),
                                           self._progress_hook(live, channel), self._segment_hook(live, channel))
        except (JobCancelled, asyncio.CancelledError):  # this task is the job's own: it just ends here
            if live.requeue:
                self.store.requeue(job.id)
                log.info("job interrupted by shutdown, queued again: job_id=%s", job.id)
            else:
                self.store.finish(job.id, CANCELLED, only_from=(RUNNING,))
                log.info("job cancelled while running: job_id=%s done_s=%.1f", job.id, live.done_s)
        except Exception as exc:  # noqa: BLE001 - every failure is recorded on the job
            if not isinstance(exc, AmanuensisError):
                log.exception("job failed: job_id=%s", job.id)
            else:
                log.info("job failed: job_id=%s error=%s", job.id, exc)
            self.store.finish(job.id, FAILED, error=error_of(exc), only_from=(RUNNING,))
        else:
            self.store.progress(job.id, transcript.duration, transcript.duration)
            self.store.finish(job.id, DONE, result=transcript.to_dict(), only_from=(RUNNING,))
            log.info("job done: job_id=%s audio_s=%.1f seconds=%.2f", job.id, transcript.duration,
                     time.time() - live.started)
        finally:
            self.live.pop(job.id, None)
        final = self.store.get(job.id)
        if final is not None and final.finished:
            self._publish_final(final)

    def _threadsafe(self, channel: Channel, name: str, data: dict[str, Any]) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(channel.publish, name, data)

    def _progress_hook(self, live: _Live, channel: Channel) -> Callable[[float, float], None]:
        def progress(done_s: float, total_s: float) -> None:
            if live.cancel.is_set():
                raise JobCancelled(live.job_id)
            live.done_s, live.total_s = done_s, total_s
            self.store.progress(live.job_id, done_s, total_s)
            self._threadsafe(channel, "progress", progress_view(done_s, total_s, live.started, RUNNING))

        return progress

    def _segment_hook(self, live: _Live, channel: Channel) -> Callable[[Segment], None]:
        def on_segment(segment: Segment) -> None:
            if live.cancel.is_set():
                raise JobCancelled(live.job_id)
            self._threadsafe(channel, "segment", segment_json(segment))

        return on_segment

    async def _expire_loop(self) -> None:
        interval = min(3600.0, max(1.0, self.retention_s / 10))
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.expire)
            except Exception:  # noqa: BLE001 - keep expiring later
                log.exception("job expiry failed")
