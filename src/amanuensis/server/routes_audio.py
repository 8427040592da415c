"""The transcription routes: POST /transcribe and OpenAI's /v1/audio/transcriptions and /translations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from ..errors import AmanuensisError
from ..options import NATIVE, OPENAI, exposed
from .errors import ApiError, error_body, from_domain
from .intake import Accepted, accept_upload
from .responses import delta_event, done_event, native_response, openai_response, segment_events, sse
from .service import JobResult, TranscriptionService

log = logging.getLogger(__name__)

router = APIRouter()
TRANSCRIPTION_ROUTES = ("/transcribe", "/v1/audio/transcriptions", "/v1/audio/translations")

_KINDS = {"bool": "boolean", "int": "integer", "float": "number", "temperature": "string", "choice": "string",
          "str": "string", "speakers": "string"}


def form_doc(door: str, extra: dict[str, dict] | None = None) -> dict:
    """The OpenAPI request body of an upload route: the file, model, response_format and the door's options."""
    properties: dict[str, dict] = {
        "file": {"type": "string", "format": "binary"},
        "model": {"type": "string", "description": "model name (default: the server's)"},
        "response_format": {"type": "string"},
    }
    for option in exposed(door):
        schema = {"type": _KINDS[option.kind], "description": option.help}
        if option.choices:
            schema["enum"] = list(option.choices)
        properties[option.name] = schema
    properties.update(extra or {})
    schema = {"type": "object", "required": ["file"], "properties": properties}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


_OPENAI_DOC = form_doc(OPENAI, {
    "timestamp_granularities[]": {"type": "array", "items": {"type": "string", "enum": ["word", "segment"]}},
    "stream": {"type": "boolean"},
    "chunking_strategy": {"type": "string", "enum": ["auto"]},
    "include[]": {"type": "array", "items": {"type": "string", "enum": ["logprobs"]}},
})


async def _run(request: Request, accepted: Accepted, **sinks) -> JobResult:
    """Run the upload as a request with the server's time limit; its file is removed however it ends."""
    service: TranscriptionService = request.app.state.service
    try:
        return await service.run(accepted.job(request, service.settings.request_timeout), **sinks)
    finally:
        accepted.upload.cleanup()


@router.post("/transcribe", openapi_extra=form_doc(NATIVE), summary="Transcribe an upload (native JSON answer)")
async def transcribe(request: Request) -> Response:
    """Multipart: file, model, response_format (json, verbose_json, text, srt, vtt, tsv) and the options
    amanuensis.options declares for this door (README: "Transcription options")."""
    accepted = await accept_upload(request, NATIVE)
    result = await _run(request, accepted)
    params = accepted.params
    return native_response(result, params.response_format, request.state.request_id, params.options.subtitle_style())


async def _openai(request: Request, task: str) -> Response:
    accepted = await accept_upload(request, OPENAI, task=task)
    params = accepted.params
    if params.stream:
        return await _stream(request, accepted)
    result = await _run(request, accepted)
    return openai_response(result.transcript, params.response_format, params.granularities,
                           params.options.subtitle_style(), params.options.logprobs)


@router.post("/v1/audio/transcriptions", openapi_extra=_OPENAI_DOC, summary="OpenAI-compatible transcription")
async def transcriptions(request: Request) -> Response:
    """OpenAI's parameters: file, model, language, prompt, response_format, temperature,
    timestamp_granularities[], include[]=logprobs, stream, chunking_strategy (and our options declared
    for this door)."""
    return await _openai(request, "transcribe")


@router.post("/v1/audio/translations", openapi_extra=_OPENAI_DOC, summary="OpenAI-compatible translation")
async def translations(request: Request) -> Response:
    """Speech in any language to English text (needs a multilingual model such as base)."""
    return await _openai(request, "translate")


async def _stream(request: Request, accepted: Accepted) -> Response:
    """Server-sent events: a delta per decoded segment, then done. Errors before the first byte are
    ordinary JSON errors; later ones arrive as an `error` event."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[tuple[str, object]] = asyncio.Queue()

    def put(kind: str, value: object) -> None:
        loop.call_soon_threadsafe(events.put_nowait, (kind, value))

    task = asyncio.create_task(
        _run(request, accepted, on_segment=lambda s: put("segment", s), on_ready=lambda d: put("ready", d))
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
    diarized = accepted.params.response_format == "diarized_json"
    return StreamingResponse(_events(task, events, state, diarized, accepted.params.options.logprobs),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _as_api_error(exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, AmanuensisError):
        return from_domain(exc)
    log.error("stream failed: %r", exc)
    return ApiError(500, f"internal error: {type(exc).__name__}", code="internal_error")


async def _events(task: asyncio.Task, events: asyncio.Queue, state: dict, diarized: bool,
                  logprobs: bool) -> AsyncIterator[bytes]:
    """Deltas as segments are decoded, then done; `diarized` (diarized_json): speakers are known only once
    the whole recording is diarized, so a transcript.text.segment event per labelled segment comes
    before done instead of the deltas."""
    first = True
    try:
        while True:
            kind, value = await events.get()
            if kind == "segment" and not diarized:
                text = value.text.lstrip() if first else value.text
                first = False
                yield delta_event(text, (value.logprobs or []) if logprobs else None)
            elif kind == "end":
                try:
                    result = task.result()
                except Exception as exc:  # noqa: BLE001 - every failure becomes an error event
                    error = _as_api_error(exc)
                    state["outcome_status"] = error.status
                    yield sse(error_body(error))
                    return
                if diarized:
                    for event in segment_events(result.transcript):
                        yield event
                yield done_event(result.transcript, logprobs)
                return
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
