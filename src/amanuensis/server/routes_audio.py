"""The transcription routes: POST /transcribe and OpenAI's /v1/audio/transcriptions and /translations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from ..errors import AmanuensisError, OptionsError
from .auth import client_key, require_api_key
from .errors import ApiError, error_body, from_domain
from .params import Form, Params, native_params, openai_params
from .responses import delta_event, done_event, native_response, openai_response, sse
from .service import Job, JobResult, TranscriptionService
from .upload import FILE_FIELD, Upload, read_upload, require_audio

log = logging.getLogger(__name__)

router = APIRouter(dependencies=[Depends(require_api_key)])
TRANSCRIPTION_ROUTES = ("/transcribe", "/v1/audio/transcriptions", "/v1/audio/translations")

_FORM_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "additionalProperties": {"type": "string"},
                }
            }
        },
    }
}


def _service(request: Request) -> TranscriptionService:
    return request.app.state.service


async def _prepare(request: Request, parse: Callable[[Form], Params], task: str) -> tuple[Job, Params]:
    """Read the upload, parse and check every parameter, and name the model; the caller owns job.path."""
    arrived = time.monotonic()
    service = _service(request)
    settings = service.settings
    if not service.ready:
        raise ApiError(503, "the server is starting or stopping", code="not_ready", headers={"Retry-After": "5"})
    try:
        upload: Upload = await asyncio.wait_for(
            read_upload(request, settings.max_upload_bytes, settings.tmp_dir), settings.request_timeout
        )
    except asyncio.TimeoutError:
        raise ApiError(408, f"the upload did not arrive within {settings.request_timeout:g} s",
                       code="upload_timeout", param=FILE_FIELD) from None
    try:
        require_audio(upload)
        params = parse(Form(upload.fields))
        info = await service.resolve_model(params.model)
        try:
            params.options.validate(info)
        except OptionsError as exc:
            if exc.param == "task":  # the route chose the task: the model is what cannot do it
                raise OptionsError(str(exc), "model") from exc
            raise
        job = Job(
            id=request.state.request_id,
            client=client_key(request),
            path=upload.path,
            options=params.options,
            model=info,
            arrived=arrived,
        )
        log.info("job accepted", extra={"job_id": job.id, "model": info.name, "task": task,
                                        "bytes": upload.size, "upload_name": upload.filename})
    except BaseException:
        upload.cleanup()
        raise
    return job, params


async def _run(request: Request, job: Job, **sinks) -> JobResult:
    """Run the job; its upload is removed however it ends."""
    try:
        return await _service(request).run(job, **sinks)
    finally:
        Upload(path=job.path).cleanup()


@router.post("/transcribe", openapi_extra=_FORM_DOC, summary="Transcribe an upload (native JSON answer)")
async def transcribe(request: Request) -> Response:
    """Multipart: file, model, language, vad_filter, word_timestamps, enable_diarization,
    min_speakers, max_speakers, response_format (json, verbose_json, text, srt, vtt, tsv)."""
    job, params = await _prepare(request, native_params, "transcribe")
    result = await _run(request, job)
    return native_response(result, params.response_format, job.id)


async def _openai(request: Request, task: str) -> Response:
    job, params = await _prepare(request, lambda form: openai_params(form, task), task)
    if params.stream:
        return await _stream(request, job)
    result = await _run(request, job)
    return openai_response(result.transcript, params.response_format, params.granularities)


@router.post("/v1/audio/transcriptions", openapi_extra=_FORM_DOC, summary="OpenAI-compatible transcription")
async def transcriptions(request: Request) -> Response:
    """OpenAI's parameters: file, model, language, prompt, response_format, temperature,
    timestamp_granularities[], stream."""
    return await _openai(request, "transcribe")


@router.post("/v1/audio/translations", openapi_extra=_FORM_DOC, summary="OpenAI-compatible translation")
async def translations(request: Request) -> Response:
    """Speech in any language to English text (needs a multilingual model such as base)."""
    return await _openai(request, "translate")


async def _stream(request: Request, job: Job) -> Response:
    """Server-sent events: a delta per decoded segment, then done. Errors before the first byte are
    ordinary JSON errors; later ones arrive as an `error` event."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[tuple[str, object]] = asyncio.Queue()

    def put(kind: str, value: object) -> None:
        loop.call_soon_threadsafe(events.put_nowait, (kind, value))

    task = asyncio.create_task(
        _run(request, job, on_segment=lambda s: put("segment", s), on_ready=lambda d: put("ready", d))
    )
    task.add_done_callback(lambda _: events.put_nowait(("end", None)))
    try:
        kind, _ = await events.get()
    except asyncio.CancelledError:
        task.cancel()
        raise
    if kind == "end":
        task.result()  # raises the job's error as a plain JSON answer
    state = request.scope.setdefault("state", {})
    return StreamingResponse(_events(task, events, state), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _as_api_error(exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, AmanuensisError):
        return from_domain(exc)
    log.error("stream failed: %r", exc)
    return ApiError(500, f"internal error: {type(exc).__name__}", code="internal_error")


async def _events(task: asyncio.Task, events: asyncio.Queue, state: dict) -> AsyncIterator[bytes]:
    first = True
    try:
        while True:
            kind, value = await events.get()
            if kind == "segment":
                text = value.text.lstrip() if first else value.text
                first = False
                yield delta_event(text)
            elif kind == "end":
                try:
                    result = task.result()
                except Exception as exc:  # noqa: BLE001 - every failure becomes an error event
                    error = _as_api_error(exc)
                    state["outcome_status"] = error.status
                    yield sse(error_body(error))
                    return
                yield done_event(result.transcript)
                return
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
