"""The one intake of every upload route: readiness, the streamed upload (size limit, time limit), the
door's parameters, the model, the options checked against it, and a probe of the audio, in that order.
Whatever fails, the upload is removed and the client gets a 4xx naming the problem."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

from ..audio import probe_seconds
from ..errors import OptionsError, check_duration
from ..models import ModelInfo
from ..options import DOORS
from .auth import client_key
from .errors import ApiError
from .params import Form, Params, parse_params
from .service import Job, TranscriptionService
from .upload import FILE_FIELD, Upload, read_upload, require_audio

log = logging.getLogger(__name__)


@dataclass
class Accepted:
    """An upload that passed every check: its file on disk (the caller owns it), parameters and model."""

    upload: Upload
    params: Params
    model: ModelInfo
    arrived: float

    def job(self, request: Request, timeout: float) -> Job:
        """The service job that transcribes this upload as a request answered within `timeout` seconds."""
        assert self.upload.path is not None
        return Job(id=request.state.request_id, client=client_key(request), path=self.upload.path,
                   options=self.params.options, model=self.model, arrived=self.arrived, timeout=timeout)


def service_of(request: Request) -> TranscriptionService:
    """The app's transcription service, or a 503 while it is starting or stopping."""
    service: TranscriptionService = request.app.state.service
    if not service.ready:
        raise ApiError(503, "the server is starting or stopping", code="not_ready", headers={"Retry-After": "5"})
    return service


async def accept_upload(request: Request, door: str, *, task: str | None = None,
                        spool_dir: Path | None = None) -> Accepted:
    """Read and check one upload at `door` (see amanuensis.options.DOORS). `task` is set by routes that
    fix it; `spool_dir` is where the file is written (default: the server's tmp dir)."""
    assert door in DOORS, door
    arrived = time.monotonic()
    service = service_of(request)
    settings = service.settings
    try:
        upload = await asyncio.wait_for(
            read_upload(request, settings.max_upload_bytes, spool_dir or settings.tmp_dir), settings.request_timeout
        )
    except asyncio.TimeoutError:
        raise ApiError(408, f"the upload did not arrive within {settings.request_timeout:g} s",
                       code="upload_timeout", param=FILE_FIELD) from None
    try:
        require_audio(upload)
        params = parse_params(door, Form(upload.fields), task)
        info = await service.resolve_model(params.model)
        try:
            params.options.validate(info)
        except OptionsError as exc:
            if exc.param == "task" and task is not None:  # the route chose the task: the model cannot do it
                raise OptionsError(str(exc), "model") from exc
            raise
        declared = await asyncio.to_thread(probe_seconds, upload.path)
        check_duration(declared, settings.max_audio_seconds)
        log.info("upload accepted", extra={"job_id": request.state.request_id, "door": door, "model": info.name,
                                           "task": params.options.task, "bytes": upload.size,
                                           "upload_name": upload.filename})
    except BaseException:
        upload.cleanup()
        raise
    return Accepted(upload, params, info, arrived)
