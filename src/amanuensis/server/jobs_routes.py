"""Transcription jobs over HTTP (/v1/jobs*), the web page at `/`, and the glue to the server's workers.

Jobs share the server's model replicas and worker slots with /transcribe (fairly, through the same
queue), so a long job never starves interactive requests and the model is loaded once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import FrameType

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from ..errors import OptionsError
from ..formats import check_format, media_type, render
from ..jobs import DONE, STATUSES, DataDirBusy, JobManager, JobRecord, JobStore, default_data_dir, job_transcript
from ..jobs.callbacks import CallbackSender, check_callback_url, load_secret
from ..jobs.manager import callback_body
from ..options import BY_NAME, JOBS, SUBTITLE_FIELDS, TranscribeOptions
from ..pipeline import ProgressCallback, SegmentCallback
from ..subtitles import SubtitleStyle
from ..transcript import Transcript
from .auth import client_key
from .errors import ApiError
from .intake import accept_upload
from .routes_audio import form_doc
from .service import Job, TranscriptionService

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
HEARTBEAT_S = 15.0
MAX_LIST = 200
JOBS_CLIENT = "jobs"

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
page = APIRouter(include_in_schema=False)


class ServiceRunner:
    """Runs a stored job through the server's one runner: the same worker slots as /transcribe (waiting
    its turn however long the queue), its audio kept for the job store."""

    def __init__(self, service: TranscriptionService) -> None:
        self.service = service

    async def __call__(self, job: JobRecord, audio: Path, options: TranscribeOptions, progress: ProgressCallback,
                       on_segment: SegmentCallback) -> Transcript:
        """Transcribe in the server's executor (the slot is freed when the thread really ends, even if this
        coroutine is cancelled)."""
        info = await self.service.resolve_model(job.model)
        work = Job(id=job.id, client=JOBS_CLIENT, path=audio, options=options, model=info, keep_audio=True)
        result = await self.service.run(work, on_segment=on_segment, progress=progress)
        return result.transcript


# -- wiring ------------------------------------------------------------------------------------------


def install_jobs(app: FastAPI) -> None:
    """Add the /v1/jobs routes, the web page at `/` and its assets under /static."""
    app.include_router(router)
    app.include_router(page)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


async def start_jobs(app: FastAPI) -> JobManager | None:
    """Open the job store in the data directory and start the job workers (after the model is loaded).

    When the directory is unusable (or held by another server) the rest of the server still runs and the
    job routes answer 503 saying why."""
    settings = app.state.settings
    data_dir = Path(settings.data_dir) if settings.data_dir else default_data_dir()
    try:
        store = await asyncio.to_thread(JobStore, data_dir)
    except (DataDirBusy, OSError, sqlite3.Error) as exc:
        log.error("jobs disabled: %s", exc)
        app.state.jobs_unavailable = f"jobs are disabled on this server: {exc}"
        return None
    try:
        secret = await asyncio.to_thread(load_secret, settings.callback_secret, data_dir)
    except OSError as exc:
        store.close()
        log.error("jobs disabled: the callback secret cannot be read or written: %s", exc)
        app.state.jobs_unavailable = f"jobs are disabled on this server: callback secret: {exc}"
        return None
    callbacks = CallbackSender(store, secret, callback_body, allow_private=settings.allow_private_callbacks)
    manager = JobManager(store, ServiceRunner(app.state.service), workers=settings.workers,
                         retention_s=settings.job_retention_hours * 3600.0, callbacks=callbacks)
    await manager.start()
    app.state.jobs = manager
    _release_streams_on_exit_signal(manager)
    return manager


def _release_streams_on_exit_signal(manager: JobManager) -> None:
    """Chain SIGINT/SIGTERM so open event streams end at once: uvicorn waits for open connections before
    it runs the lifespan shutdown, and a browser following a job would otherwise hold it for the full
    graceful-shutdown timeout."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(number)
        if not callable(previous):
            continue

        def handler(signum: int, frame: FrameType | None, previous: Callable = previous) -> None:
            loop.call_soon_threadsafe(manager.release_streams)
            previous(signum, frame)

        signal.signal(number, handler)


async def stop_jobs(app: FastAPI) -> None:
    """Stop the job workers; a running job is queued again for the next start."""
    manager: JobManager | None = getattr(app.state, "jobs", None)
    if manager is not None:
        await manager.stop(timeout=app.state.settings.shutdown_timeout)


# -- helpers -----------------------------------------------------------------------------------------


def _manager(request: Request) -> JobManager:
    manager: JobManager | None = getattr(request.app.state, "jobs", None)
    if manager is None:
        reason = getattr(request.app.state, "jobs_unavailable", None)
        if reason:
            raise ApiError(503, reason, code="jobs_unavailable")
        raise ApiError(503, "the job queue is starting or stopping", code="not_ready", headers={"Retry-After": "5"})
    return manager


def _job(manager: JobManager, job_id: str) -> JobRecord:
    job = manager.get(job_id)
    if job is None:
        raise ApiError(404, f"no job with id {job_id!r} (it may have expired)", code="job_not_found", param="id")
    return job


# -- routes ------------------------------------------------------------------------------------------


@router.post("", status_code=202, openapi_extra=form_doc(JOBS, {"callback_url": {
    "type": "string", "description": "http(s) URL POSTed the finished job, signed (X-Amanuensis-Signature)"}}),
             summary="Submit a transcription job (multipart, same fields as /transcribe)")
async def submit_job(request: Request) -> JSONResponse:
    """Multipart: file, model, response_format, callback_url (POSTed the job when it ends, signed) and the
    options amanuensis.options declares for this door (the same as /transcribe). Answers 202 with the job
    at once; the work happens in the background."""
    manager = _manager(request)
    accepted = await accept_upload(request, JOBS, spool_dir=manager.store.upload_dir)
    try:
        params = accepted.params
        callback_url = params.callback_url
        if callback_url is not None:
            allow_private = request.app.state.settings.allow_private_callbacks
            callback_url = await asyncio.to_thread(check_callback_url, callback_url, allow_private)
        job = await manager.submit(accepted.upload.path, filename=accepted.upload.filename,
                                   model=params.model or accepted.model.name, response_format=params.response_format,
                                   options=params.options, client=client_key(request), callback_url=callback_url)
    except BaseException:
        accepted.upload.cleanup()
        raise
    return JSONResponse(manager.view(job), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


@router.get("", summary="Recent jobs, newest first")
async def list_jobs(request: Request, limit: int = 20, status: str | None = None) -> dict:
    """`?limit=` (1-200, default 20) and `?status=` (queued, running, done, failed, cancelled)."""
    manager = _manager(request)
    if not 1 <= limit <= MAX_LIST:
        raise OptionsError(f"limit must be between 1 and {MAX_LIST}, not {limit}", "limit")
    if status is not None and status not in STATUSES:
        raise OptionsError(f"status must be one of {', '.join(STATUSES)}, not {status!r}", "status")
    jobs = await asyncio.to_thread(manager.store.list, limit, status)
    return {"object": "list", "data": [manager.view(job) for job in jobs]}


@router.get("/{job_id}", summary="A job's status and progress; its transcript once done")
async def get_job(request: Request, job_id: str, format: str | None = None) -> Response:
    """Without `format`: the job as JSON (the transcript under `result` once done). With
    `?format=json|verbose_json|text|srt|vtt|tsv`: the transcript itself in that format (409 until done);
    srt and vtt follow the job's subtitle options, or those the query gives (max_line_width=…)."""
    manager = _manager(request)
    if format is not None:
        check_format(format, param="format")
    job = _job(manager, job_id)
    style = _subtitle_style(job, dict(request.query_params))
    if format is None:
        return JSONResponse(manager.view(job, with_result=True))
    if job.status != DONE:
        raise ApiError(409, f"job {job_id} is {job.status}, not done: no transcript to render yet",
                       code="job_not_done", param="id")
    name = Path(job.filename).stem if job.filename else None  # RTTM's file id
    return Response(render(job_transcript(job), format, style, name=name), media_type=media_type(format))


def _subtitle_style(job: JobRecord, query: dict[str, str]) -> SubtitleStyle:
    """The style a job's subtitles are written to: its own options, each replaced where the query gives it."""
    options = TranscribeOptions.from_dict(job.options)
    for name in SUBTITLE_FIELDS:
        if name in query:
            setattr(options, name, BY_NAME[name].parse(query[name]))
    return options.subtitle_style()


@router.get("/{job_id}/events", summary="Progress and segments as server-sent events")
async def job_events(request: Request, job_id: str, after: int = 0) -> StreamingResponse:
    """text/event-stream: `status`, `progress`, `segment` … then one of `done` (with the result),
    `failed` or `cancelled`, and the stream ends. Resume with Last-Event-ID or `?after=N`."""
    manager = _manager(request)
    _job(manager, job_id)
    last = request.headers.get("last-event-id", "")
    if last.isdigit():
        after = int(last)

    async def stream() -> AsyncIterator[bytes]:
        async for event in manager.events(job_id, after, heartbeat=HEARTBEAT_S):
            yield b": keep-alive\n\n" if event is None else event.encode()

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/{job_id}/audio", summary="The audio the job was submitted with")
async def job_audio(request: Request, job_id: str) -> FileResponse:
    """The stored upload, as sent (kept until the job expires)."""
    manager = _manager(request)
    job = _job(manager, job_id)
    path = manager.store.audio_path(job)
    if not path.exists():
        raise ApiError(404, f"the audio of job {job_id} is gone", code="audio_not_found", param="id")
    return FileResponse(path, filename=job.filename or path.name)


@router.delete("/{job_id}", summary="Cancel a job; delete it (and its audio) once finished")
async def delete_job(request: Request, job_id: str) -> JSONResponse:
    """A queued or running job is cancelled (work stops at the next chunk) and returned; a finished job
    is deleted with its audio."""
    manager = _manager(request)
    job = _job(manager, job_id)
    if not job.finished:
        cancelled = await manager.cancel(job_id)
        return JSONResponse(manager.view(cancelled or job))
    await asyncio.to_thread(manager.store.delete, job_id)
    return JSONResponse({"id": job_id, "object": "transcription.job.deleted", "deleted": True})


@page.get("/", summary="The web page")
async def index() -> FileResponse:
    """The single-page web app (drop a file, follow the job, read and play the transcript)."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")
